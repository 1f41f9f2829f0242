import { readdirSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ImageCache } from '../cache/image-cache.ts';
import type { Config } from '../config.ts';
import type { Entry } from '../domain/entry.ts';
import { AppError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import { isChartName } from '../charts/chart.ts';
import {
  describeEntry,
  EntryInfo,
  QuerySummaryInfo,
  querySummaryInfo,
} from '../routes/entry-info.ts';
import { errorResponse } from '../routes/schemas.ts';
import type { Activity } from './activity.ts';
import * as read from './read-model.ts';
import { ROOT_URL } from '../paths.ts';

/** Where the data endpoints live; one plugin, so one guard (API keys, issue 9) covers them all. */
export const DASHBOARD_API = '/dashboard/api';
const DEFAULT_PAGE = 48;
const MAX_PAGE = 200;
const DEFAULT_CHARTS_PAGE = 12;
const MAX_CHARTS_PAGE = 100;
/** Open event streams at most: each holds a socket; more is a misbehaving client, not people. */
const MAX_STREAMS = 500;
/** A stream whose client stopped reading is dropped once this much is queued for it. */
const MAX_STREAM_BACKLOG = 1024 * 1024;
/** Settled entries described inline per event; beyond that the page is told to reload its view. */
const MAX_SETTLED_INLINE = 200;
/** Status is pushed at most this often while things change, and at least this often anyway. */
const STATUS_MIN_MS = 1000;
const STATUS_EVERY_MS = 15_000;

const EXAMPLES_DIR = new URL('examples/queries/', ROOT_URL);

const STATE_KIND = { ready: 'image', pending: 'pending', failed: 'error' } as const;

const Status = Type.Object({
  entries: Type.Object({
    ready: Type.Integer(),
    pending: Type.Integer(),
    failed: Type.Integer(),
  }),
  stored_bytes: Type.Integer({ description: 'Bytes of image data stored (shared images once)' }),
  requests: Type.Object(
    { hit: Type.Integer(), shared: Type.Integer(), miss: Type.Integer() },
    { description: 'POST /requests since start, by how they were satisfied' },
  ),
  upstream: Type.Object(
    {
      minutes: Type.Integer({ description: 'The window the counts cover' }),
      calls: Type.Integer({ description: 'Fetches from Kentik that finished in the window' }),
      errors: Type.Integer({ description: 'Of those, the ones that failed' }),
      last_error: Type.Optional(
        Type.Object({
          at: Type.Number({ description: 'Epoch milliseconds' }),
          status: Type.Integer(),
          message: Type.String(),
        }),
      ),
    },
    { description: 'How Kentik fared lately (this process)' },
  ),
  backend: Type.String({ description: 'Where entries are kept, e.g. "filesystem"' }),
  default_ttl: Type.Integer({ description: 'DEFAULT_TTL, seconds' }),
  max_ttl: Type.Integer({ description: 'MAX_TTL, seconds' }),
  charts: Type.Object(
    { defined: Type.Integer({ description: 'Named charts defined (list them at /charts)' }) },
    { description: 'Named live charts (/charts/{name})' },
  ),
});

const epoch = (description: string) =>
  Type.Number({ description: `${description}, unix epoch seconds` });

/** A named chart as the dashboard shows it. */
const DashboardChart = Type.Object({
  name: Type.String(),
  image_url: Type.String({ description: 'Path of the live image: the stable URL to embed' }),
  refresh: Type.Integer({ description: 'Seconds an image stays fresh' }),
  query_summary: QuerySummaryInfo,
  health: Type.Union(
    [
      Type.Literal('fresh'),
      Type.Literal('stale'),
      Type.Literal('failing'),
      Type.Literal('waiting'),
    ],
    {
      description:
        'fresh: image younger than `refresh`; stale: older (the next view refreshes it); ' +
        'failing: the last refresh failed (the last good image, if any, is still served); waiting: no image yet',
    },
  ),
  image: Type.Union([
    Type.Null(),
    Type.Object({
      mime: Type.String(),
      fetched_at: epoch('When Kentik drew it'),
    }),
  ]),
  due_at: Type.Union([Type.Null(), epoch('When the image falls due')]),
  refreshing: Type.Boolean({ description: 'This replica is refreshing the chart right now' }),
  last_error: Type.Union([
    Type.Null(),
    Type.Object({
      status: Type.Integer(),
      type: Type.String(),
      message: Type.String(),
      at: epoch('When the refresh failed'),
    }),
  ]),
  failures: Type.Integer({ description: 'Refreshes failed in a row' }),
  retry_at: Type.Union([Type.Null(), epoch('A failing chart is not refreshed before this time')]),
});

export interface DashboardApiOptions {
  cache: ImageCache;
  config: Pick<Config, 'defaultTtl' | 'maxTtl'>;
  metrics: Metrics;
  activity: Activity;
  backend: string;
  /** Named live charts, listed with their embed snippets. */
  charts: read.ChartReader;
}

/** JSON and event-stream endpoints behind the dashboard, usable by scripts too. */
export const dashboardApi: FastifyPluginAsyncTypebox<DashboardApiOptions> = async (
  app,
  { cache, config, metrics, activity, backend, charts },
) => {
  const describe = (entries: Entry[]) => describeEntries(cache, activity, entries);

  // The dashboard's data lists every live id (each one a capability URL to an image), so every
  // route here asks for an API key when API_KEYS is set, like /info. The page itself stays open
  // and sends the key the user typed in (see assets/dashboard/app.js).
  app.addHook('onRoute', (route) => {
    route.config = { ...route.config, access: 'api-key' } as typeof route.config;
  });

  async function status() {
    const c = await read.counts(cache);
    const requests = { hit: 0, shared: 0, miss: 0 };
    for (const v of (await metrics.requests.get()).values) {
      const r = v.labels.result as keyof typeof requests;
      if (r in requests) requests[r] += v.value;
    }
    return {
      entries: { ready: c.image, pending: c.pending, failed: c.error },
      stored_bytes: c.storedBytes,
      requests,
      upstream: activity.upstreamWindow(),
      backend,
      default_ttl: config.defaultTtl,
      max_ttl: config.maxTtl,
      charts: { defined: await charts.count() },
    };
  }

  app.get(
    `${DASHBOARD_API}/entries`,
    {
      schema: {
        summary: 'Browse live entries, newest first',
        description:
          'One page of live entries with their query in words, state, times, size, served count and sharing. ' +
          'Filter by state, image type and text (all words must appear in the query summary, id or error message); ' +
          'pass `next_cursor` back as `cursor` for the next page. Fast at 100k entries: the page never needs all of /info.',
        tags: ['dashboard'],
        querystring: Type.Object({
          cursor: Type.Optional(
            Type.String({
              pattern: '^[0-9A-Za-z:_.-]{1,200}$',
              description: 'next_cursor of the previous page',
            }),
          ),
          limit: Type.Optional(
            Type.String({
              pattern: '^[0-9]{1,3}$',
              description: `Entries per page, 1–${MAX_PAGE} (default ${DEFAULT_PAGE})`,
            }),
          ),
          state: Type.Optional(
            Type.Union([Type.Literal('ready'), Type.Literal('pending'), Type.Literal('failed')]),
          ),
          image_type: Type.Optional(
            Type.Union(read.IMAGE_TYPES.map((t) => Type.Literal(t)) as never),
          ),
          q: Type.Optional(Type.String({ maxLength: 200, description: 'Words to search for' })),
        }),
        response: {
          200: Type.Object({
            entries: Type.Array(EntryInfo),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
            matched: Type.Union([Type.Integer(), Type.Null()], {
              description:
                'Live entries matching the state filter; null with a text or image-type filter (a search looks at up to 5000 entries per request and continues from next_cursor)',
            }),
          }),
          400: errorResponse('A parameter is malformed'),
        },
      },
    },
    async (request) => {
      const { cursor, limit: rawLimit, state, image_type, q } = request.query;
      const limit = rawLimit === undefined ? DEFAULT_PAGE : Number(rawLimit);
      if (limit < 1 || limit > MAX_PAGE)
        throw new AppError(400, 'Validation error', `limit must be from 1 to ${MAX_PAGE}.`, [
          'querystring',
          'limit',
        ]);
      const result = await read.page(cache, {
        limit,
        ...(cursor ? { cursor } : {}),
        ...(state ? { kind: STATE_KIND[state] } : {}),
        ...(image_type ? { imageType: image_type as read.ImageType } : {}),
        ...(q ? { text: q } : {}),
      });
      return {
        entries: await describe(result.entries),
        next_cursor: result.next ?? null,
        matched: result.matched ?? null,
      };
    },
  );

  app.get(
    `${DASHBOARD_API}/charts`,
    {
      schema: {
        summary: 'Named charts with what the page shows of them',
        description:
          'One page of named charts (/charts/{name}) in name order: the stable image URL to embed, the query in words, ' +
          'the refresh period, when the current image was drawn, and whether it is fresh, stale, failing (with the last error) ' +
          'or waiting for its first image. Pass `next` back as `after` for the next page. ' +
          'Times are unix epoch seconds, as in /dashboard/api/entries.',
        tags: ['dashboard'],
        querystring: Type.Object({
          after: Type.Optional(
            Type.String({ maxLength: 200, description: '`next` of the previous page' }),
          ),
          limit: Type.Optional(
            Type.String({
              maxLength: 10,
              description: `Charts per page, 1–${MAX_CHARTS_PAGE} (default ${DEFAULT_CHARTS_PAGE})`,
            }),
          ),
        }),
        response: {
          200: Type.Object({
            charts: Type.Array(DashboardChart),
            total: Type.Integer({ description: 'Charts defined in all' }),
            next: Type.Union([Type.String(), Type.Null()], {
              description: 'Pass as `after` for the next page; null on the last page',
            }),
          }),
          400: errorResponse('after or limit is malformed'),
        },
      },
    },
    async (request) => {
      const { after, limit: rawLimit } = request.query;
      const limit = rawLimit === undefined ? DEFAULT_CHARTS_PAGE : Number(rawLimit);
      if (
        rawLimit !== undefined &&
        (!/^[0-9]{1,3}$/.test(rawLimit) || limit < 1 || limit > MAX_CHARTS_PAGE)
      )
        throw new AppError(
          400,
          'Validation error',
          `limit must be a whole number of charts from 1 to ${MAX_CHARTS_PAGE}, written in digits (e.g. ?limit=12).`,
          ['querystring', 'limit'],
        );
      if (after !== undefined && !isChartName(after))
        throw new AppError(
          400,
          'Validation error',
          'after must be a chart name: pass `next` of the previous page unchanged, or omit it for the first page.',
          ['querystring', 'after'],
        );
      const page = await read.chartsPage(charts, after, limit);
      const now = Date.now();
      const seconds = (ms: number | undefined) => (ms === undefined ? null : ms / 1000);
      return {
        charts: page.charts.map(({ chart, summary, refreshing }) => {
          const { definition: d, state: s } = chart;
          return {
            name: d.name,
            image_url: `/charts/${d.name}/image`,
            refresh: d.refresh,
            query_summary: querySummaryInfo(summary),
            health: read.chartHealth(chart, now),
            image: s.image ? { mime: s.image.mime, fetched_at: s.image.fetchedAt / 1000 } : null,
            due_at: seconds(s.dueAt),
            refreshing,
            last_error: s.lastError
              ? {
                  status: s.lastError.status,
                  type: s.lastError.type,
                  message: s.lastError.message,
                  at: s.lastError.at / 1000,
                }
              : null,
            failures: s.failures,
            retry_at: seconds(s.retryAt),
          };
        }),
        total: page.total,
        next: page.next ?? null,
      };
    },
  );

  app.get(
    `${DASHBOARD_API}/status`,
    {
      schema: {
        summary: 'The cache at a glance',
        description:
          'Entries by state, bytes stored, hit/shared/miss counts, upstream calls and errors in the last minutes, the last upstream error, and the backend.',
        tags: ['dashboard'],
        response: { 200: Status },
      },
    },
    status,
  );

  const examples = loadExamples();
  app.get(
    `${DASHBOARD_API}/examples`,
    {
      schema: {
        summary: 'Example requests',
        description:
          'The request bodies shipped in examples/queries/, for the "New chart" form. Empty when the folder is not installed.',
        tags: ['dashboard'],
        response: {
          200: Type.Object({
            examples: Type.Array(
              Type.Object({
                name: Type.String({ description: 'File name' }),
                title: Type.String(),
                body: Type.Object({}, { additionalProperties: true }),
              }),
            ),
          }),
        },
      },
    },
    async () => ({ examples }),
  );

  // --- Live updates: one listener on the cache, fanned out to every open stream. ---
  const streams = new Set<ServerResponse>();
  const send = (event: string, data: unknown): void => {
    if (streams.size === 0) return;
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const res of streams) {
      if (res.writableLength > MAX_STREAM_BACKLOG) {
        streams.delete(res);
        res.destroy();
        continue;
      }
      res.write(frame);
    }
  };

  let statusTimer: NodeJS.Timeout | undefined;
  let lastStatusAt = 0;
  const pushStatus = (): void => {
    if (statusTimer || streams.size === 0) return;
    const wait = Math.max(0, lastStatusAt + STATUS_MIN_MS - Date.now());
    statusTimer = setTimeout(() => {
      statusTimer = undefined;
      lastStatusAt = Date.now();
      void status().then((s) => send('status', s));
    }, wait);
  };
  const heartbeat = setInterval(pushStatus, STATUS_EVERY_MS).unref();

  const onCreated = (ids: string[]): void => {
    for (const id of ids) send('created', { id });
    pushStatus();
  };
  const onSettled = (ids: string[], hash: string): void => {
    pushStatus();
    if (streams.size === 0) return;
    // Another replica's settle may come without ids: the page then reloads what it shows of `hash`.
    if (ids.length === 0 || ids.length > MAX_SETTLED_INLINE) {
      send('settled', { hash, entries: [], more: ids.length });
      return;
    }
    void cache
      .entries(ids)
      .then((found) => describe(found.filter((e): e is Entry => e !== undefined)))
      .then(
        (entries) => send('settled', { hash, entries }),
        () => send('settled', { hash, entries: [], more: ids.length }),
      );
  };
  const onDeleted = (ids: string[]): void => {
    send('deleted', { ids: ids.slice(0, MAX_SETTLED_INLINE) });
    pushStatus();
  };
  const onReset = (): void => {
    send('reset', {});
    pushStatus();
  };
  cache.events.on('created', onCreated);
  cache.events.on('settled', onSettled);
  cache.events.on('deleted', onDeleted);
  cache.events.on('reset', onReset);

  // Streams never end on their own: close them first, or shutdown would wait for them.
  app.addHook('preClose', async () => {
    clearInterval(heartbeat);
    clearTimeout(statusTimer);
    cache.events.off('created', onCreated);
    cache.events.off('settled', onSettled);
    cache.events.off('deleted', onDeleted);
    cache.events.off('reset', onReset);
    for (const res of streams) res.end();
    streams.clear();
  });

  app.get(
    `${DASHBOARD_API}/events`,
    {
      schema: {
        summary: 'Live updates (Server-Sent Events)',
        description:
          'A `text/event-stream`. Events: `status` (the /status object; on connect, on change at most once a second, and every 15 s), ' +
          '`created` (`{"id"}` of a newly issued id), `settled` (`{"hash", "entries": [...]}`: pending entries of that query that now hold an image or an error, ' +
          'described as in /entries; `entries` is empty when they are too many to list or another replica settled them), ' +
          '`deleted` (`{"ids"}` removed before their expiry), `reset` (the shared index was reset).',
        tags: ['dashboard'],
        produces: ['text/event-stream'],
        response: {
          200: { description: 'The event stream', type: 'string' },
          503: errorResponse('Too many open streams, or shutting down'),
        },
      },
    },
    async (request, reply) => {
      if (streams.size >= MAX_STREAMS || cache.closing)
        throw new AppError(
          503,
          'Service unavailable',
          `Too many open event streams (${MAX_STREAMS}); close other dashboard tabs or retry later.`,
          ['events'],
          { headers: { 'retry-after': '30' } },
        );
      const first = await status();
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        // Tells nginx-style proxies not to buffer the stream.
        'x-accel-buffering': 'no',
      });
      res.write(`retry: 3000\nevent: status\ndata: ${JSON.stringify(first)}\n\n`);
      streams.add(res);
      request.raw.once('close', () => streams.delete(res));
    },
  );
};

function loadExamples(): Array<{ name: string; title: string; body: Record<string, unknown> }> {
  let files: string[];
  try {
    files = readdirSync(EXAMPLES_DIR)
      .filter((f) => f.endsWith('.json'))
      .sort();
  } catch {
    return [];
  }
  const out = [];
  for (const name of files) {
    try {
      const body = JSON.parse(readFileSync(new URL(name, EXAMPLES_DIR), 'utf8')) as Record<
        string,
        unknown
      >;
      delete body.expect_status;
      const q = (body.api_query as { queries?: Array<{ query?: { query_title?: unknown } }> })
        ?.queries?.[0]?.query;
      const title = typeof q?.query_title === 'string' ? q.query_title : name;
      out.push({ name, title, body });
    } catch {
      // A broken example is skipped; the examples test catches it in CI.
    }
  }
  return out;
}

/** Entries as /info and the dashboard show them, with served counts and sharing in one batch. */
export async function describeEntries(cache: ImageCache, activity: Activity, entries: Entry[]) {
  const hashes = [...new Set(entries.map((e) => e.hash))];
  const shares = new Map<string, number>();
  try {
    const counts = await cache.sharing(hashes);
    hashes.forEach((h, i) => shares.set(h, counts[i] ?? 1));
  } catch {
    // Sharing is a detail for people: an index hiccup must not fail the whole answer.
  }
  return entries.map((e) =>
    describeEntry(e, {
      served: activity.servedCount(e.id),
      // An error is never shared with a new id: it stands alone.
      shares: e.kind === 'error' ? 1 : (shares.get(e.hash) ?? 1),
    }),
  );
}
