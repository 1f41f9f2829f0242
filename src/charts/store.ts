import type { ChartDefinition, ChartState, StoredChart } from './chart.ts';

export interface ChartPage {
  charts: StoredChart[];
  /** Charts defined in all. */
  total: number;
  /** Name to pass as `after` for the next page; undefined on the last page. */
  next?: string;
}

export type PutResult = 'created' | 'replaced' | 'limit';

/**
 * Where chart definitions and their refresh state live, and who may refresh a chart right now.
 * A filesystem implementation (one process per CACHE_PATH) and a Redis one (every replica shares
 * them), both run by one contract suite (store.contract.ts).
 *
 * Contract: a definition write replaces its state (a new generation starts empty); `putState` only
 * lands while the definition still has the state's generation; names list in byte order; a lock
 * is held by at most one caller until it is released or its time runs out.
 */
export interface ChartStore {
  open(): Promise<void>;
  close(): Promise<void>;
  get(name: string): Promise<StoredChart | undefined>;
  /** Charts whose name sorts after `after` (all when undefined), at most `limit`, in name order. */
  list(after: string | undefined, limit: number): Promise<ChartPage>;
  count(): Promise<number>;
  /** Creates or replaces a chart and clears its state; 'limit' when creating would exceed `maxCount`. */
  put(definition: ChartDefinition, maxCount: number): Promise<PutResult>;
  /** True when the chart existed. */
  delete(name: string): Promise<boolean>;
  /** Saves refresh results; false (and nothing written) when the chart was replaced or deleted. */
  putState(name: string, state: ChartState): Promise<boolean>;
  /** Takes the refresh lock of a chart for `ttlMs`; a token to release it, or undefined if held. */
  lock(name: string, ttlMs: number): Promise<string | undefined>;
  /** Releases the lock if `token` still holds it. */
  unlock(name: string, token: string): Promise<void>;
}
