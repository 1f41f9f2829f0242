import type { FastifyInstance, preHandlerHookHandler } from 'fastify';
import type { Config } from '../config.ts';
import type { Metrics } from '../metrics.ts';
import { chartReadRoutes, chartWriteRoutes } from '../routes/charts.ts';
import { FsChartStore } from './fs-store.ts';
import { createChartMetrics } from './metrics.ts';
import { ChartService, type ChartImageSource } from './service.ts';
import type { ChartStore } from './store.ts';

export interface ChartsDeps {
  config: Config;
  cache: ChartImageSource;
  metrics: Metrics;
  /** Defaults to the filesystem store under CACHE_PATH. */
  store?: ChartStore;
  /** Access control for the write routes (PUT/DELETE), e.g. the API-key guard of POST /requests. */
  guardWrites?: preHandlerHookHandler;
}

/**
 * Named live charts: opens the chart store, and registers the read routes (open, like
 * /image/{id}) and the write routes (in their own plugin, behind `guardWrites` when given).
 */
export async function registerCharts(
  app: FastifyInstance,
  { config, cache, metrics, store: givenStore, guardWrites }: ChartsDeps,
): Promise<ChartService> {
  const log = app.log.child({ component: 'charts' });
  const store =
    givenStore ??
    new FsChartStore(config.cachePath, {
      onQuarantine: (file, reason, movedTo) =>
        log.warn({ file, reason, movedTo }, 'unreadable chart file quarantined'),
    });
  await store.open();
  const charts = new ChartService({
    config,
    cache,
    store,
    log,
    metrics: createChartMetrics(metrics.registry, store),
  });
  await app.register(chartReadRoutes, { charts, config });
  await app.register(async (scope) => {
    if (guardWrites) scope.addHook('preHandler', guardWrites);
    await scope.register(chartWriteRoutes, { charts, config });
  });
  app.addHook('onClose', async () => {
    await store.close();
  });
  return charts;
}
