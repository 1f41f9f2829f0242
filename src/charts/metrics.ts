import { Counter, Gauge, type Registry } from 'prom-client';
import type { ChartStore } from './store.ts';

export type RefreshOutcome = 'fetched' | 'shared' | 'error' | 'timeout';

/** The charts' own metrics, registered in the app's registry beside the cache's. */
export function createChartMetrics(registry: Registry, store: ChartStore) {
  const r = [registry];
  return {
    refreshes: new Counter({
      name: 'kic_chart_refreshes_total',
      help:
        'Chart refreshes by outcome: fetched (a new Kentik call), shared (joined a fetch in flight or ' +
        'reused a fresh image), error (Kentik or storage failed), timeout (still pending after ENTRY_WAIT_TIMEOUT)',
      labelNames: ['outcome'] as const,
      registers: r,
    }),
    staleServes: new Counter({
      name: 'kic_chart_stale_serves_total',
      help:
        'Chart images served past their refresh time, by reason: revalidating (a refresh is due or ' +
        'running), error (the last refresh failed; stale-if-error)',
      labelNames: ['reason'] as const,
      registers: r,
    }),
    defined: new Gauge({
      name: 'kic_charts_defined',
      help: 'Named charts defined',
      registers: r,
      async collect() {
        try {
          this.set(await store.count());
        } catch {
          // The store is unreachable: keep the last value rather than fail the whole scrape.
        }
      },
    }),
  };
}

export type ChartMetrics = ReturnType<typeof createChartMetrics>;
