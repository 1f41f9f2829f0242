import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { INFO_TYPE, type Entry } from '../domain/entry.ts';
import type { ImageCache } from '../cache/image-cache.ts';
import { errorResponse } from './schemas.ts';

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 100_000;

const EntryInfo = Type.Object({
  id: Type.String(),
  type: Type.Union([Type.Literal('image'), Type.Literal('api_error'), Type.Literal('api_request')]),
  size: Type.Integer({
    description: 'Bytes of image data (image), of the error message (api_error), or 0 (pending)',
  }),
  expiration: Type.Number({ description: 'Expiry as unix epoch seconds' }),
  mime: Type.Optional(Type.String()),
  status: Type.Optional(Type.Integer({ description: 'HTTP status served for an api_error entry' })),
});

export const infoRoutes: FastifyPluginAsyncTypebox<{ cache: ImageCache }> = async (
  app,
  { cache },
) => {
  app.get(
    '/info',
    {
      config: { access: 'api-key' },
      schema: {
        summary: 'What the cache holds',
        description: `Counts of live entries and up to \`limit\` entries of each list (default ${DEFAULT_LIMIT}), soonest-expiring first is not guaranteed: order is insertion order.`,
        tags: ['operations'],
        querystring: Type.Object({
          limit: Type.Optional(
            Type.String({
              pattern: '^[0-9]{1,6}$',
              description: `Entries per list, 0–${MAX_LIMIT} (default ${DEFAULT_LIMIT})`,
            }),
          ),
        }),
        response: {
          200: Type.Object({
            active_count: Type.Integer({ description: 'Entries holding an image or an error' }),
            pending_count: Type.Integer({ description: 'Entries waiting for Kentik' }),
            active_entries: Type.Array(EntryInfo),
            pending_entries: Type.Array(EntryInfo),
            stored_bytes: Type.Integer({
              description: 'Bytes of image data on disk (shared images counted once)',
            }),
            limit: Type.Integer(),
            truncated: Type.Boolean({ description: 'True when a list was cut at `limit`' }),
          }),
          400: errorResponse('limit is not a whole number'),
        },
      },
    },
    async (request) => {
      const limit = Math.min(
        MAX_LIMIT,
        request.query.limit === undefined ? DEFAULT_LIMIT : Number(request.query.limit),
      );
      const now = Date.now();
      const active: ReturnType<typeof describe>[] = [];
      const pending: ReturnType<typeof describe>[] = [];
      let activeCount = 0;
      let pendingCount = 0;
      for (const entry of cache.entries.values()) {
        if (entry.expiresAt <= now) continue;
        if (entry.kind === 'pending') {
          if (pendingCount++ < limit) pending.push(describe(entry));
        } else if (activeCount++ < limit) active.push(describe(entry));
      }
      return {
        active_count: activeCount,
        pending_count: pendingCount,
        active_entries: active,
        pending_entries: pending,
        stored_bytes: cache.storedBytes,
        limit,
        truncated: activeCount > limit || pendingCount > limit,
      };
    },
  );
};

function describe(entry: Entry) {
  const base = {
    id: entry.id,
    type: INFO_TYPE[entry.kind] as 'image' | 'api_error' | 'api_request',
    expiration: entry.expiresAt / 1000,
  };
  switch (entry.kind) {
    case 'image':
      return { ...base, size: entry.size, mime: entry.mime };
    case 'error':
      return { ...base, size: Buffer.byteLength(entry.message), status: entry.status };
    case 'pending':
      return { ...base, size: 0 };
  }
}
