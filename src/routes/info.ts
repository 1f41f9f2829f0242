import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Entry } from '../domain/entry.ts';
import type { ImageCache } from '../cache/image-cache.ts';
import { PAGE_MAX_LIMIT } from '../coordination/coordinator.ts';
import type { Activity } from '../dashboard/activity.ts';
import { describeEntries } from '../dashboard/api.ts';
import { EntryInfo } from './entry-info.ts';
import { errorResponse } from './schemas.ts';

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 100_000;

export const infoRoutes: FastifyPluginAsyncTypebox<{
  cache: ImageCache;
  activity: Activity;
}> = async (app, { cache, activity }) => {
  app.get(
    '/info',
    {
      config: { access: 'api-key' },
      schema: {
        summary: 'What the cache holds',
        description:
          `Counts of live entries (across every replica in Redis mode) and up to \`limit\` entries of each list (default ${DEFAULT_LIMIT}), newest first. ` +
          'When the lists were cut, `next_cursor` is set: pass it as `cursor` for the following page (each list then continues where it stopped).',
        tags: ['operations'],
        querystring: Type.Object({
          limit: Type.Optional(
            Type.String({
              pattern: '^[0-9]{1,6}$',
              description: `Entries per list, 0–${MAX_LIMIT} (default ${DEFAULT_LIMIT})`,
            }),
          ),
          cursor: Type.Optional(
            Type.String({
              pattern: '^[0-9A-Za-z:_.-]{1,200}$',
              description: 'next_cursor of the previous page',
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
              description: 'Bytes of image data stored (shared images counted once)',
            }),
            limit: Type.Integer(),
            truncated: Type.Boolean({ description: 'True when a list was cut at `limit`' }),
            next_cursor: Type.Optional(
              Type.String({ description: 'Pass as `cursor` to continue; absent on the last page' }),
            ),
          }),
          400: errorResponse('limit is not a whole number, or cursor is malformed'),
        },
      },
    },
    async (request) => {
      const limit = Math.min(
        MAX_LIMIT,
        request.query.limit === undefined ? DEFAULT_LIMIT : Number(request.query.limit),
      );
      const counts = await cache.counts();
      const active: Entry[] = [];
      const pending: Entry[] = [];
      // One walk, newest first, in pages of at most PAGE_MAX_LIMIT: it stops as soon as one list
      // is full, so each list holds every entry of its kind down to next_cursor and nothing is
      // skipped when the client continues from there.
      let cursor: string | undefined = request.query.cursor;
      let next: string | undefined = cursor;
      if (limit > 0) {
        for (;;) {
          const room = limit - Math.max(active.length, pending.length);
          if (room <= 0) break;
          const page = await cache.page({ cursor, limit: Math.min(PAGE_MAX_LIMIT, room) });
          for (const e of page.entries) (e.kind === 'pending' ? pending : active).push(e);
          next = page.next;
          if (next === undefined) break;
          cursor = next;
        }
      }
      const activeCount = counts.image + counts.error;
      const truncated = limit === 0 ? activeCount + counts.pending > 0 : next !== undefined;
      return {
        active_count: activeCount,
        pending_count: counts.pending,
        active_entries: await describeEntries(cache, activity, active),
        pending_entries: await describeEntries(cache, activity, pending),
        stored_bytes: counts.storedBytes,
        limit,
        truncated,
        ...(truncated && next !== undefined ? { next_cursor: next } : {}),
      };
    },
  );
};
