/**
 * Replicas in Redis mode for the cluster scenarios: one redis-server (no persistence, as a
 * benchmark needs none) and N services on it, started like every other benchmark service.
 */
import { startRedis, type RedisServer } from '../../test/support/index.ts';
import type { Ctx, ServiceProc } from './context.ts';
import { startBenchService } from './service.ts';

export async function redisForBench(ctx: Ctx): Promise<RedisServer> {
  const redis = await startRedis({ config: ['maxmemory-policy noeviction'] });
  ctx.cleanup.push(() => redis.stop());
  return redis;
}

export async function redisReplicas(
  ctx: Ctx,
  redis: RedisServer,
  n: number,
  prefix: string,
  env: Record<string, string> = {},
): Promise<ServiceProc[]> {
  const svcs = await Promise.all(
    Array.from({ length: n }, () =>
      startBenchService({
        sim: ctx.sim,
        fromSource: ctx.fromSource,
        profileDir: ctx.profileDir,
        env: { CACHE_BACKEND: 'redis', REDIS_URL: redis.url, REDIS_KEY_PREFIX: prefix, ...env },
      }),
    ),
  );
  for (const svc of svcs) ctx.cleanup.push(() => svc.stop().then(() => undefined));
  return svcs;
}
