import { setTimeout as sleep } from 'node:timers/promises';

export { sleep };
export { freePort, monoMs, onPath } from '../../test/support/index.ts';
// Polls until a value appears: the same helper the tests use.
export { until as waitFor } from '../../test/support/index.ts';

/** Nearest-rank percentile of unsorted numbers; NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function round(n: number, digits = 1): number {
  if (!Number.isFinite(n)) return n;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
