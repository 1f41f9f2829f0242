import { readFileSync } from 'node:fs';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ImageCache } from '../cache/image-cache.ts';
import { AppError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import type { Store } from '../store/store.ts';
import { errorResponse } from './schemas.ts';

const favicon = readFileSync(new URL('../../assets/favicon.ico', import.meta.url));

export const operationRoutes: FastifyPluginAsyncTypebox<{
  cache: ImageCache;
  store: Store;
  metrics: Metrics;
}> = async (app, { cache, store, metrics }) => {
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
            'Shutting down, or the cache directory cannot be written (disk full, permissions)',
          ),
        },
      },
    },
    async () => {
      if (cache.closing)
        throw new AppError(503, 'Not ready', 'The service is shutting down.', ['service']);
      try {
        await store.checkWritable();
      } catch (err) {
        throw new AppError(
          503,
          'Not ready',
          `The cache storage cannot be written: ${(err as Error).message}. Free disk space or fix the permissions and layout of CACHE_PATH (it must hold the folders entries/, blobs/ and quarantine/).`,
          ['storage'],
        );
      }
      return { status: 'ready' as const, entries: cache.entries.size };
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
      const counts = cache.countEntries();
      for (const [kind, n] of Object.entries(counts)) metrics.entries.set({ kind }, n);
      metrics.bytes.set(cache.storedBytes);
      reply.type(metrics.registry.contentType);
      return metrics.registry.metrics();
    },
  );

  app.get('/favicon.ico', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('image/x-icon').header('cache-control', 'public, max-age=86400').send(favicon),
  );
};
