import type { FastifyBaseLogger, FastifyInstance, preHandlerHookHandler } from 'fastify';
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
  /** Defaults to the store of CACHE_BACKEND: files under CACHE_PATH, or Redis at REDIS_URL. */
  store?: ChartStore;
  /** An extra preHandler for the write routes (PUT/DELETE) only, e.g. a guard of their own. */
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
    if (!config.redisUrl) throw new Error('REDIS_URL is required with CACHE_BACKEND=redis');
    // A connection of its own through the service's Redis adapter (same timeouts, no offline
    // queue, password scrubbed from errors); the coordinator opened Redis just before, so a
    // Redis that cannot be reached has already stopped the start.
    // Loaded only in Redis mode: the filesystem mode starts without the Redis client's modules.
    const [{ createRedisLink }, { RedisChartStore }, { chartRedis }] = await Promise.all([
      import('../coordination/redis/client.ts'),
      import('./redis-store.ts'),
      import('./redis-link.ts'),
    ]);
    const link = createRedisLink(config.redisUrl, (message) =>
      log.warn({ err: message }, 'chart store: Redis connection error'),
    );
    await link.connect();
    return new RedisChartStore(chartRedis(link), config.redisKeyPrefix, () => link.close());
  }
  return new FsChartStore(config.cachePath, {
    onQuarantine: (file, reason, movedTo) =>
      log.warn({ file, reason, movedTo }, 'unreadable chart file quarantined'),
  });
}
