import type { FastifyBaseLogger, FastifyInstance, preHandlerHookHandler } from 'fastify';
import type { Config } from '../config.ts';
import type { Metrics } from '../metrics.ts';
import { chartReadRoutes, chartWriteRoutes } from '../routes/charts.ts';
import { FsChartStore } from './fs-store.ts';
import { createChartMetrics } from './metrics.ts';
import { connectChartRedis } from './redis-client.ts';
import { RedisChartStore } from './redis-store.ts';
import { ChartService, type ChartImageSource } from './service.ts';
import type { ChartStore } from './store.ts';

export interface ChartsDeps {
  config: Config;
  cache: ChartImageSource;
  metrics: Metrics;
  /** Defaults to the store of CACHE_BACKEND: files under CACHE_PATH, or Redis at REDIS_URL. */
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
  const store = givenStore ?? (await createChartStore(config, log));
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

/** The chart store CACHE_BACKEND asks for. */
async function createChartStore(config: Config, log: FastifyBaseLogger): Promise<ChartStore> {
  if (config.cacheBackend === 'redis') {
    if (!config.redisUrl) throw new Error('CACHE_BACKEND=redis without REDIS_URL');
    const url = config.redisUrl;
    // Node-redis errors name host and port, never the password; scrubbed anyway.
    const redis = await connectChartRedis(url.reveal(), (message) =>
      log.warn({ err: url.scrub(message) }, 'chart store: Redis connection error'),
    );
    return new RedisChartStore(redis, config.redisKeyPrefix, () => redis.close());
  }
  return new FsChartStore(config.cachePath, {
    onQuarantine: (file, reason, movedTo) =>
      log.warn({ file, reason, movedTo }, 'unreadable chart file quarantined'),
  });
}
