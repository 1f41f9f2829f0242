/** Settings of the named live charts; read with the rest of the configuration (src/config.ts). */
export interface ChartSettings {
  /**
   * Smallest `refresh` a chart may have, seconds. 60 in production (the floor: Kentik
   * quota); tests lower it so a refresh falls due without waiting a minute.
   */
  minRefresh: number;
  /** Most charts that may be defined at once (each can cost one Kentik call per refresh period). */
  maxCount: number;
  /**
   * Seconds an image a refresh fetched outlives its refresh period: how long a chart keeps serving
   * its last good image while Kentik fails (stale-if-error), or while nobody looks at it. The ids a
   * refresh creates live `refresh + max(refresh, grace)` seconds, capped at MAX_TTL.
   */
  graceSeconds: number;
}

type NumberReader = (
  name: string,
  fallback: number,
  opts?: { min?: number; max?: number; integer?: boolean; unit?: string },
) => number;

export function loadChartSettings(number: NumberReader): ChartSettings {
  return {
    minRefresh: number('CHART_MIN_REFRESH', 60, {
      min: 1,
      max: 60,
      integer: true,
      unit: 'seconds; below 60 only for tests',
    }),
    maxCount: number('CHART_MAX_COUNT', 1000, { min: 0, max: 1_000_000, integer: true }),
    graceSeconds: number('CHART_GRACE', 3600, {
      min: 0,
      max: 30 * 86_400,
      integer: true,
      unit: 'seconds',
    }),
  };
}
