import { readFileSync } from 'node:fs';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ImageCache } from '../cache/image-cache.ts';
import { AppError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import { errorResponse } from './schemas.ts';
import { ROOT_URL } from '../paths.ts';

const favicon = readFileSync(new URL('assets/favicon.ico', ROOT_URL));

export const operationRoutes: FastifyPluginAsyncTypebox<{
  cache: ImageCache;
  metrics: Metrics;
}> = async (app, { cache, metrics }) => {
  app.get(
    '/healthz',
    {
      schema: {
        summary: 'Liveness: the process answers',
        tags: ['operations'],
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        summary:
          'Readiness: the cache is loaded and every storage folder takes writes (missing folders are recreated)',
        tags: ['operations'],
        response: {
          200: Type.Object({ status: Type.Literal('ready'), entries: Type.Integer() }),
          503: errorResponse(
            'Shutting down, the cache directory cannot be written (disk full, permissions), or Redis cannot be reached',
          ),
        },
      },
    },
    async () => {
      if (cache.closing)
        throw new AppError(503, 'Not ready', 'The service is shutting down.', ['service']);
      let counts;
      try {
        await cache.checkReady();
        counts = await cache.counts();
      } catch (err) {
        throw new AppError(
          503,
          'Not ready',
          cache.backend === 'redis'
            ? `Redis cannot be reached: ${(err as Error).message}. Check REDIS_URL and that Redis is up.`
            : `The cache storage cannot be written: ${(err as Error).message}. Free disk space or fix the permissions and layout of CACHE_PATH (it must hold the folders entries/, blobs/ and quarantine/).`,
          ['storage'],
          { headers: { 'retry-after': '2' } },
        );
      }
      return {
        status: 'ready' as const,
        entries: counts.pending + counts.image + counts.error,
      };
    },
  );

  app.get(
    '/metrics',
    {
      config: { access: 'metrics' },
      schema: {
        summary: 'Prometheus metrics (needs METRICS_KEY as a Bearer token when it is set)',
        tags: ['operations'],
        produces: ['text/plain'],
      },
    },
    async (_request, reply) => {
      // Cluster-wide in Redis mode; a scrape while Redis is down keeps the last values.
      const counts = await cache.counts().catch(() => undefined);
      if (counts) {
        metrics.entries.set({ kind: 'pending' }, counts.pending);
        metrics.entries.set({ kind: 'image' }, counts.image);
        metrics.entries.set({ kind: 'error' }, counts.error);
        metrics.bytes.set(counts.storedBytes);
      }
      reply.type(metrics.registry.contentType);
      return metrics.registry.metrics();
    },
  );

  app.get('/favicon.ico', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('image/x-icon').header('cache-control', 'public, max-age=86400').send(favicon),
  );
};
