import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Entry } from '../domain/entry.ts';
import type { ImageCache } from '../cache/image-cache.ts';
import type { Activity } from '../dashboard/activity.ts';
import { describeEntry, EntryInfo } from './entry-info.ts';
import { errorResponse } from './schemas.ts';

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 100_000;

export const infoRoutes: FastifyPluginAsyncTypebox<{
  cache: ImageCache;
  activity: Activity;
}> = async (app, { cache, activity }) => {
  const describe = (entry: Entry) =>
    describeEntry(entry, {
      served: activity.servedCount(entry.id),
      shares: cache.idsSharing(entry.hash),
    });

  app.get(
    '/info',
    {
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
