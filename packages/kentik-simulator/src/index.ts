/**
 * Kentik API simulator: a local stand-in for Kentik's POST /api/v5/query/topXchart that draws
 * real charts (chart.js on @napi-rs/canvas) and injects faults on demand. See README.md here.
 */
export {
  startSimulator,
  DEFAULT_EMAIL,
  DEFAULT_TOKEN,
  API_BASE_PATH,
  CHART_PATH,
  BODY_LIMIT,
  type Simulator,
  type SimulatorOptions,
} from './server.ts';
export {
  DEFAULT_FAULTS,
  ERROR_STATUSES,
  parseErrorRates,
  type ErrorStatus,
  type FaultConfig,
  type ScriptedOutcome,
} from './faults.ts';
export type { SimulatorStats } from './stats.ts';
export { renderChart, renderSvg, chartConfig, CHART_WIDTH, CHART_HEIGHT } from './render.ts';
export {
  validateRequest,
  parseKentikTime,
  METRICS,
  DIMENSIONS,
  VIZ_TYPES,
  IMAGE_TYPES,
  TOPX_MIN,
  TOPX_MAX,
  type KentikRequest,
  type KentikQuery,
  type KentikQueryItem,
  type ValidationResult,
} from './validate.ts';
export { sampleRequest } from './fixtures.ts';
export { queryHash } from './hash.ts';
