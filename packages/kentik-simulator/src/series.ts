/**
 * Deterministic fake traffic for a query: the time window and buckets, the top-X series names
 * and their values. Values are a pure function of (query hash, series rank, timestamp), so the
 * same query drawn in the same minute gives the same numbers, and a sliding lookback window
 * shows the same history minute after minute.
 */
import { hash32, mulberry32, seedFromHex, between, unitHash } from './prng.ts';
import { constraintsOf } from './filters.ts';
import { seriesNames } from './names.ts';
import { type MetricInfo, metricInfo } from './units.ts';
import { type KentikQuery, metricsOf, parseKentikTime } from './validate.ts';

/** At most this many series are drawn, whatever `topx` says (legends stay readable). */
export const MAX_DRAWN_SERIES = 12;
export const DEFAULT_TOPX = 8;

const MINUTE = 60_000;
/** Bucket widths, smallest first. */
const STEPS_S = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

export interface TimeWindow {
  startMs: number;
  endMs: number;
  stepMs: number;
  /** Bucket end timestamps, ascending. */
  times: number[];
  /** Lookback in seconds, or null for an explicit starting_time..ending_time window. */
  lookbackSeconds: number | null;
}

/**
 * The window a query covers: `lookback_seconds` ending at `now` rounded down to the minute, or
 * starting_time..ending_time. Bucket width is the smallest of 1, 2, 5, 10, 15, 30 min, 1, 2, 3,
 * 6, 12, 24 h that gives at most `maxPoints` buckets (10 s buckets for windows under 10 min).
 */
export function timeWindow(q: KentikQuery, now: Date, maxPoints = 300): TimeWindow {
  let startMs: number;
  let endMs: number;
  let lookbackSeconds: number | null = null;
  const lb = q.lookback_seconds;
  if (typeof lb === 'number' && lb > 0) {
    endMs = Math.floor(now.getTime() / MINUTE) * MINUTE;
    startMs = endMs - lb * 1000;
    lookbackSeconds = lb;
  } else {
    startMs = parseKentikTime(q.starting_time ?? '') ?? now.getTime() - 3_600_000;
    endMs = parseKentikTime(q.ending_time ?? '') ?? now.getTime();
  }
  const span = endMs - startMs;
  const candidates = span < 600_000 ? [10, 30, 60] : STEPS_S;
  const stepS =
    candidates.find((s) => span / (s * 1000) <= maxPoints) ?? STEPS_S[STEPS_S.length - 1] ?? 86400;
  const stepMs = stepS * 1000;
  const times: number[] = [];
  for (let t = Math.floor(startMs / stepMs) * stepMs + stepMs; t <= endMs; t += stepMs)
    times.push(t);
  if (times.length < 2) {
    times.length = 0;
    times.push(startMs, endMs);
  }
  return { startMs, endMs, stepMs, times, lookbackSeconds };
}

export interface Series {
  name: string;
  values: number[];
  avg: number;
  p95: number;
  max: number;
}

export interface ChartData {
  metric: string;
  info: MetricInfo;
  window: TimeWindow;
  series: Series[];
  /** topx asked for (default 8). */
  requested: number;
}

function filterCount(q: KentikQuery): number {
  let n = 0;
  const walk = (groups: unknown): void => {
    if (!Array.isArray(groups)) return;
    for (const g of groups) {
      if (typeof g !== 'object' || g === null) continue;
      const rec = g as Record<string, unknown>;
      if (Array.isArray(rec.filters)) n += rec.filters.length;
      walk(rec.filterGroups);
    }
  };
  walk(q.filters?.filterGroups);
  return n;
}

function stats(values: number[]): Pick<Series, 'avg' | 'p95' | 'max'> {
  if (values.length === 0) return { avg: 0, p95: 0, max: 0 };
  const sorted = values.slice().sort((a, b) => a - b);
  const avg = values.reduce((s, v) => s + v, 0) / values.length;
  const p95 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))] ?? 0;
  return { avg, p95, max: sorted[sorted.length - 1] ?? 0 };
}

/** Smooth value noise in [-1, 1]: cosine interpolation between hashed knots. */
function smoothNoise(seed: number, k: number, t: number, spanMs: number): number {
  const x = t / spanMs;
  const j = Math.floor(x);
  const f = x - j;
  const a = unitHash(seed, k, j) * 2 - 1;
  const b = unitHash(seed, k, j + 1) * 2 - 1;
  const w = (1 - Math.cos(Math.PI * f)) / 2;
  return a * (1 - w) + b * w;
}

/** Occasional traffic bursts: a smooth bump over one knot span, ~2.5% of spans. */
function burst(seed: number, k: number, t: number, spanMs: number): number {
  const x = t / spanMs;
  const j = Math.floor(x);
  if (unitHash(seed, k, j, 3) >= 0.025) return 1;
  const height = 0.3 + unitHash(seed, k, j, 4) * 0.8;
  return 1 + height * Math.sin(Math.PI * (x - j));
}

/** Daily cycle peaking in the (UTC) evening, a little lower at weekends. */
function diurnal(t: number, peakHour: number, amplitude: number): number {
  const d = new Date(t);
  const hour = d.getUTCHours() + d.getUTCMinutes() / 60;
  const day = d.getUTCDay();
  const weekly = day === 0 || day === 6 ? 0.88 : 1;
  return weekly * (1 + amplitude * Math.cos((2 * Math.PI * (hour - peakHour)) / 24));
}

/**
 * The data of a chart: `hash` identifies the query (not its image type, so a PNG and a PDF of
 * one query show the same traffic), `q` is the primary query. Names, shares and levels come from
 * the hash and the query's filters; values from (hash, rank, timestamp).
 */
export function generateChartData(
  hash: string,
  q: KentikQuery,
  now: Date,
  maxPoints = 300,
): ChartData {
  const metric = metricsOf(q)[0] ?? 'bytes';
  const info = metricInfo(metric);
  const window = timeWindow(q, now, maxPoints);
  const seed = seedFromHex(hash);
  const rng = mulberry32(hash32(seed, 1));

  const requested = typeof q.topx === 'number' ? q.topx : DEFAULT_TOPX;
  const names = seriesNames(
    q.dimension,
    Math.min(requested, MAX_DRAWN_SERIES),
    rng,
    constraintsOf(q),
  );

  // Overall size: narrower queries (filters, chosen devices) see less traffic.
  let total = between(rng, info.magnitude[0], info.magnitude[1]);
  for (let i = filterCount(q); i > 0; i--) total *= between(rng, 0.2, 0.7);
  if (q.all_devices === false && q.device_name && q.device_name.length > 0)
    total *= between(rng, 0.15, 0.5);

  // Shares of the total: a Zipf-like long tail, the top X covering 55-95% of it.
  const skew = between(rng, 0.7, 1.3);
  const weights = names.map((_, i) => Math.pow(i + 1, -skew) * between(rng, 0.85, 1.15));
  const wsum = weights.reduce((s, w) => s + w, 0) || 1;
  const coverage = names.length === 1 && names[0] === 'Total' ? 1 : between(rng, 0.55, 0.95);
  const basePeak = between(rng, 18, 22);
  const knotSpan = Math.max(window.stepMs * 6, 6 * MINUTE);

  const series = names.map((name, k) => {
    const base = info.additive
      ? (total * coverage * (weights[k] ?? 0)) / wsum
      : between(rng, info.magnitude[0], info.magnitude[1]);
    const peak = basePeak + between(rng, -3, 3);
    const amplitude = info.additive ? between(rng, 0.2, 0.5) : between(rng, 0.05, 0.2);
    const sigma = between(rng, 0.05, 0.13);
    const values = window.times.map((t) => {
      const n = smoothNoise(seed, k, t, knotSpan) + 0.4 * (unitHash(seed, k, t, 7) * 2 - 1);
      const v = base * diurnal(t, peak, amplitude) * (1 + sigma * n) * burst(seed, k, t, knotSpan);
      const clamped = Math.max(0, v);
      return info.integer ? Math.round(clamped) : clamped;
    });
    return { name, values, ...stats(values) };
  });
  series.sort((a, b) => b.avg - a.avg);
  return { metric, info, window, series, requested };
}
