import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { INFO_TYPE, type Entry } from '../domain/entry.ts';
import type { ImageCache } from '../cache/image-cache.ts';
import { PAGE_MAX_LIMIT } from '../coordination/coordinator.ts';
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
      const active: ReturnType<typeof describe>[] = [];
      const pending: ReturnType<typeof describe>[] = [];
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
          for (const e of page.entries) (e.kind === 'pending' ? pending : active).push(describe(e));
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
        active_entries: active,
        pending_entries: pending,
        stored_bytes: counts.storedBytes,
        limit,
        truncated,
        ...(truncated && next !== undefined ? { next_cursor: next } : {}),
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
