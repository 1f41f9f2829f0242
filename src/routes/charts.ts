import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { CHART_NAME_PATTERN_SOURCE, isChartName, type StoredChart } from '../charts/chart.ts';
import type { ChartImageResult, ChartService } from '../charts/service.ts';
import type { Config } from '../config.ts';
import { queryHash, UncanonicalQueryError } from '../domain/hash.ts';
import { AppError } from '../errors.ts';
import {
  EXTENSIONS,
  IMAGE_PRODUCES,
  imageResponses,
  matchesEtag,
  SVG_CSP,
} from './image-response.ts';
import { errorResponse } from './schemas.ts';

export interface ChartRouteOptions {
  charts: ChartService;
  config: Config;
}

const DEFAULT_REFRESH = 300;
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;
/**
 * Room around the query in a PUT body (`refresh`, whitespace): the body may be this much larger
 * than MAX_QUERY_BYTES, so an oversized query gets the 400 naming api_query, not a bare 413.
 */
const BODY_ENVELOPE_BYTES = 16 * 1024;
const MAX_QUERY_DEPTH = 64;

const NameParam = Type.Object({
  name: Type.String({
    pattern: CHART_NAME_PATTERN_SOURCE,
    description: 'Chart name: 1–100 of A–Z a–z 0–9 . _ -',
  }),
});

const ChartError = Type.Object({
  status: Type.Integer({ description: 'HTTP status the failure was served with' }),
  type: Type.String(),
  msg: Type.String(),
  at: Type.String({ format: 'date-time' }),
});

const ChartSummary = Type.Object({
  name: Type.String(),
  refresh: Type.Integer({ description: 'Seconds an image stays fresh' }),
  image_url: Type.String({ description: 'Path of the live image, to embed' }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
  image: Type.Union([
    Type.Null(),
    Type.Object({
      id: Type.String({ description: 'Image id (also served at /image/{id} until it expires)' }),
      mime: Type.String(),
      etag: Type.String(),
      fetched_at: Type.String({ format: 'date-time', description: 'When Kentik drew it' }),
      age: Type.Integer({ description: 'Seconds since it was drawn' }),
    }),
  ]),
  stale: Type.Boolean({ description: 'The image is older than `refresh` (or there is none)' }),
  due_at: Type.Union([Type.Null(), Type.String({ format: 'date-time' })], {
    description: 'When the image falls due; the first request after it starts a refresh',
  }),
  refreshing: Type.Boolean({ description: 'This replica is refreshing the chart right now' }),
  last_attempt_at: Type.Union([Type.Null(), Type.String({ format: 'date-time' })]),
  last_error: Type.Union([Type.Null(), ChartError], {
    description: 'The last refresh failed (cleared by the next success)',
  }),
  failures: Type.Integer({ description: 'Refreshes failed in a row' }),
  retry_at: Type.Union([Type.Null(), Type.String({ format: 'date-time' })], {
    description: 'A failing chart is not refreshed before this time (backoff)',
  }),
});

const ChartView = Type.Intersect([
  ChartSummary,
  Type.Object({
    api_query: Type.Object({}, { additionalProperties: true }),
  }),
]);

const iso = (ms: number | undefined): string | null =>
  ms === undefined ? null : new Date(ms).toISOString();

function summarize(chart: StoredChart, refreshing: boolean, now = Date.now()) {
  const { definition: d, state: s } = chart;
  return {
    name: d.name,
    refresh: d.refresh,
    image_url: `/charts/${d.name}/image`,
    created_at: iso(d.createdAt)!,
    updated_at: iso(d.updatedAt)!,
    image: s.image
      ? {
          id: s.image.imageId,
          mime: s.image.mime,
          etag: `"${s.image.digest}"`,
          fetched_at: iso(s.image.fetchedAt)!,
          age: Math.max(0, Math.floor((now - s.image.fetchedAt) / 1000)),
        }
      : null,
    stale: s.dueAt === undefined || now >= s.dueAt,
    due_at: iso(s.dueAt),
    refreshing,
    last_attempt_at: iso(s.lastAttemptAt),
    last_error: s.lastError
      ? {
          status: s.lastError.status,
          type: s.lastError.type,
          msg: s.lastError.message,
          at: iso(s.lastError.at)!,
        }
      : null,
    failures: s.failures,
    retry_at: iso(s.retryAt),
  };
}

const badName = (name: string): AppError =>
  new AppError(
    400,
    'Validation error',
    `Chart name ${JSON.stringify(name.slice(0, 120))} is invalid: use 1–100 characters of A–Z, a–z, 0–9, '.', '_' and '-' (not "." or "..", which URLs cannot carry).`,
    ['path', 'name'],
  );

function checkName(request: FastifyRequest): string {
  const name = (request.params as { name?: unknown }).name;
  if (typeof name !== 'string' || !isChartName(name)) throw badName(String(name ?? ''));
  return name;
}

/**
 * Reading charts and their images is open, like GET /image/{id}. `GET /charts` pages by name:
 * pass the answer's `next` as `after` for the next page.
 */
export const chartReadRoutes: FastifyPluginAsyncTypebox<ChartRouteOptions> = async (
  app,
  { charts, config },
) => {
  const waitSeconds = Math.ceil(config.entryWaitTimeoutMs / 1000);

  app.get(
    '/charts',
    {
      attachValidation: true,
      schema: {
        summary: 'List named charts',
        description:
          `Charts in name order, at most \`limit\` per page (default ${DEFAULT_PAGE}, at most ${MAX_PAGE}). ` +
          'When more follow, `next` is the name to pass as `after` for the next page; null on the last page. ' +
          'Items are the same as GET /charts/{name} without `api_query`.',
        tags: ['charts'],
        querystring: Type.Object({
          limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })),
          after: Type.Optional(Type.String({ pattern: CHART_NAME_PATTERN_SOURCE })),
        }),
        response: {
          200: Type.Object({
            charts: Type.Array(ChartSummary),
            total: Type.Integer({ description: 'Charts defined in all' }),
            limit: Type.Integer(),
            next: Type.Union([Type.Null(), Type.String()]),
          }),
          400: errorResponse('limit or after is invalid'),
        },
      },
    },
    async (request) => {
      const q = request.query as { limit?: unknown; after?: unknown };
      let limit = DEFAULT_PAGE;
      if (q.limit !== undefined) {
        limit = Number(q.limit);
        if (
          typeof q.limit !== 'string' ||
          !/^[0-9]{1,4}$/.test(q.limit) ||
          limit < 1 ||
          limit > MAX_PAGE
        )
          throw new AppError(
            400,
            'Validation error',
            `limit must be a whole number from 1 to ${MAX_PAGE}; got ${JSON.stringify(String(q.limit).slice(0, 50))}.`,
            ['querystring', 'limit'],
          );
      }
      const after = q.after;
      if (after !== undefined && (typeof after !== 'string' || !isChartName(after)))
        throw new AppError(
          400,
          'Validation error',
          'after must be a chart name (the `next` of the previous page).',
          ['querystring', 'after'],
        );
      const page = await charts.list(after as string | undefined, limit);
      const now = Date.now();
      return {
        charts: page.charts.map((c) => summarize(c, charts.isRefreshing(c.definition.name), now)),
        total: page.total,
        limit,
        next: page.next ?? null,
      };
    },
  );

  app.get(
    '/charts/:name',
    {
      attachValidation: true,
      schema: {
        summary: 'A chart: definition and state',
        description:
          'The definition (`api_query`, `refresh`) and what refreshes produced: the current image and its age, ' +
          'whether it is stale, the last error of a failing chart and when it is retried.',
        tags: ['charts'],
        params: NameParam,
        response: {
          200: ChartView,
          400: errorResponse('The name is invalid'),
          404: errorResponse('No chart has this name'),
        },
      },
    },
    async (request) => {
      const name = checkName(request);
      const chart = await charts.get(name);
      return { ...summarize(chart, charts.isRefreshing(name)), api_query: chart.definition.query };
    },
  );

  app.get(
    '/charts/:name/image',
    {
      attachValidation: true,
      schema: {
        summary: "A chart's live image",
        description:
          'The latest image of the chart: embed this URL. A fresh image is served with `Cache-Control: max-age` = seconds ' +
          'until it falls due. An image older than `refresh` is served at once (stale-while-revalidate) with ' +
          '`X-Chart-Stale: <age seconds>`, and starts one background refresh. If the last refresh failed, the last good ' +
          'image keeps being served (stale-if-error) with `X-Chart-Stale`, `X-Chart-Error: <status> <type>` and ' +
          '`Warning: 111`; failing charts are retried with backoff. With no image yet the request waits for the first ' +
          `fetch (up to ENTRY_WAIT_TIMEOUT, now ${waitSeconds} s) and answers like GET /image/{id}: the image, Kentik's ` +
          'error, or 504 with Retry-After. ETag / If-None-Match → 304. HEAD is answered too.',
        tags: ['charts'],
        params: NameParam,
        headers: Type.Object({ 'if-none-match': Type.Optional(Type.String()) }),
        produces: IMAGE_PRODUCES,
        response: {
          ...imageResponses(
            'The image, with ETag, Cache-Control, Last-Modified and, when stale, X-Chart-Stale',
          ),
          400: errorResponse('The name is invalid'),
          404: errorResponse('No chart has this name'),
          '4XX': errorResponse(
            "The chart has no good image and its refresh failed: Kentik's error (400, 401, 403, 429…)",
          ),
          502: errorResponse('Kentik answered with something that is not an image'),
          503: errorResponse('The service is shutting down; retry'),
          504: errorResponse('Kentik did not answer in time, or the first image is still pending'),
          '5XX': errorResponse("Kentik's own server error, or the image could not be stored"),
        },
      },
    },
    async (request, reply) => {
      const name = checkName(request);
      const gone = new AbortController();
      const onClose = (): void => gone.abort();
      reply.raw.once('close', onClose);
      let result: ChartImageResult;
      try {
        result = await charts.image(name, gone.signal);
      } finally {
        reply.raw.off('close', onClose);
      }
      return send(reply, name, result);
    },
  );

  function send(reply: FastifyReply, name: string, result: ChartImageResult): FastifyReply {
    const now = Date.now();
    switch (result.kind) {
      case 'aborted':
        return reply; // the client left; nobody to answer
      case 'closing':
        throw new AppError(
          503,
          'Service unavailable',
          'The service is restarting; the chart is still being fetched. Retry in a few seconds.',
          ['path', 'name'],
          { headers: { 'retry-after': '5' } },
        );
      case 'pending':
        throw new AppError(
          504,
          'Image pending',
          `The chart's first image is still being fetched from Kentik after waiting ${waitSeconds} s. Retry the same URL later.`,
          ['path', 'name'],
          { headers: { 'retry-after': '5' } },
        );
      case 'error': {
        reply.header('cache-control', 'no-store');
        const retry =
          result.retryAt === undefined
            ? undefined
            : Math.max(1, Math.ceil((result.retryAt - now) / 1000));
        const headers: Record<string, string> = retry ? { 'retry-after': String(retry) } : {};
        throw new AppError(
          result.error.status,
          result.error.type,
          `${result.error.message}${retry ? ` (chart ${name} has no good image yet; its next refresh is allowed in ${retry} s)` : ''}`,
          ['upstream'],
          { headers },
        );
      }
      case 'image': {
        const { entry, bytes, stale, chart } = result;
        const maxAge = Math.max(0, Math.ceil((result.nextAt - now) / 1000));
        const etag = `"${entry.digest}"`;
        reply.headers({
          etag,
          // Seconds until the next refresh is due; no `Age` header on purpose: caches would subtract
          // it from max-age, which already counts from now.
          'cache-control': `public, max-age=${maxAge}`,
          'last-modified': new Date(entry.fetchedAt).toUTCString(),
          'x-content-type-options': 'nosniff',
          'content-disposition': `inline; filename="${name}.${EXTENSIONS[entry.mime]}"`,
        });
        if (stale) {
          reply.header(
            'x-chart-stale',
            String(Math.max(0, Math.floor((now - entry.fetchedAt) / 1000))),
          );
          const err = chart.state.lastError;
          if (err) {
            reply.header('x-chart-error', `${err.status} ${err.type}`);
            reply.header('warning', '111 kentik-image-cache "Revalidation Failed"');
          } else {
            reply.header('warning', '110 kentik-image-cache "Response is Stale"');
          }
        }
        if (entry.mime === 'image/svg+xml') reply.header('content-security-policy', SVG_CSP);
        if (matchesEtag(reply.request.headers['if-none-match'], etag))
          return reply.code(304).send();
        return reply.type(entry.mime).header('content-length', bytes.length).send(bytes);
      }
    }
  }
};

/** PUT and DELETE: every route that changes charts, in one plugin so one guard covers them all. */
export const chartWriteRoutes: FastifyPluginAsyncTypebox<ChartRouteOptions> = async (
  app,
  { charts, config },
) => {
  const minRefresh = config.charts.minRefresh;
  const defaultRefresh = Math.min(DEFAULT_REFRESH, config.maxTtl);

  // Every route of this plugin changes charts: each asks for the access control POST /requests
  // has (`config.access`, enforced by the service's API-key guard when API keys are configured).
  app.addHook('onRoute', (route) => {
    route.config = { ...route.config, access: 'api-key' } as typeof route.config;
  });

  app.put(
    '/charts/:name',
    {
      attachValidation: true,
      bodyLimit: config.maxQueryBytes + BODY_ENVELOPE_BYTES,
      schema: {
        summary: 'Define or replace a named chart',
        description:
          'Creates the chart, or replaces it (a replaced chart starts over: its next image request fetches the new query). ' +
          'Nothing is fetched until the image is first requested. Answers 201 when created, 200 when replaced, ' +
          `with the chart as GET /charts/{name} shows it. At most CHART_MAX_COUNT charts (now ${config.charts.maxCount}).`,
        tags: ['charts'],
        params: NameParam,
        body: Type.Object(
          {
            api_query: Type.Object(
              {},
              {
                additionalProperties: true,
                description: 'The Kentik topXchart query, as for POST /requests',
              },
            ),
            refresh: Type.Optional(
              Type.Integer({
                minimum: minRefresh,
                maximum: config.maxTtl,
                description: `Seconds an image stays fresh (default ${defaultRefresh}, from ${minRefresh} to MAX_TTL ${config.maxTtl})`,
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: ChartView,
          201: ChartView,
          400: errorResponse('The name, api_query or refresh is invalid'),
          409: errorResponse('CHART_MAX_COUNT charts are defined already'),
          413: errorResponse('The body is larger than MAX_QUERY_BYTES + 16 KiB'),
          415: errorResponse('The Content-Type is not application/json'),
          507: errorResponse('The chart could not be stored'),
        },
      },
    },
    async (request, reply) => {
      const name = checkName(request);
      const { query, refresh } = validateChartBody(request.body, {
        minRefresh,
        maxTtl: config.maxTtl,
        defaultRefresh,
        maxQueryBytes: config.maxQueryBytes,
      });
      const { created, chart } = await charts.define(name, query, refresh);
      request.log.info({ chart: name, refresh, created }, 'chart defined');
      reply.code(created ? 201 : 200);
      return { ...summarize(chart, false), api_query: chart.definition.query };
    },
  );

  app.delete(
    '/charts/:name',
    {
      attachValidation: true,
      schema: {
        summary: 'Delete a named chart',
        description:
          'Removes the definition at once; its image URL answers 404 from then on. Images already fetched stay ' +
          'available under their ids until they expire.',
        tags: ['charts'],
        params: NameParam,
        response: {
          204: { description: 'Deleted', type: 'null' },
          400: errorResponse('The name is invalid'),
          404: errorResponse('No chart has this name'),
        },
      },
    },
    async (request, reply) => {
      const name = checkName(request);
      await charts.remove(name);
      request.log.info({ chart: name }, 'chart deleted');
      return reply.code(204).send(null);
    },
  );
};

/** Checks a PUT body by hand, so every mistake gets a message that says how to fix it. */
export function validateChartBody(
  body: unknown,
  limits: { minRefresh: number; maxTtl: number; defaultRefresh: number; maxQueryBytes: number },
): { query: Record<string, unknown>; refresh: number } {
  const fail = (loc: string[], msg: string): never => {
    throw new AppError(400, 'Validation error', msg, ['body', ...loc]);
  };
  const shape = '{"api_query": {…Kentik topXchart query…}, "refresh": seconds}';
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    fail([], `The body must be a JSON object: ${shape}.`);
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b))
    if (key !== 'api_query' && key !== 'refresh')
      fail(
        [key],
        `Unknown field ${JSON.stringify(key.slice(0, 50))}: a chart takes ${shape}${key === 'ttl' ? ' (a chart has a refresh period, not a ttl)' : ''}.`,
      );
  const query = b.api_query;
  if (query === undefined) fail(['api_query'], `api_query is required: send ${shape}.`);
  if (typeof query !== 'object' || query === null || Array.isArray(query))
    fail(
      ['api_query'],
      'api_query must be a JSON object (the Kentik topXchart query), not null, an array or a scalar.',
    );
  if (depthExceeds(query, MAX_QUERY_DEPTH))
    fail(
      ['api_query'],
      `api_query is nested deeper than ${MAX_QUERY_DEPTH} levels; a Kentik query is a shallow JSON object.`,
    );
  // The same cap as POST /requests (a chart's query is kept for as long as the chart exists).
  if (Buffer.byteLength(JSON.stringify(query)) > limits.maxQueryBytes)
    fail(
      ['api_query'],
      `api_query is larger than ${Math.round(limits.maxQueryBytes / 1024)} KiB (MAX_QUERY_BYTES); a Kentik query is a few KB.`,
    );
  try {
    queryHash(query);
  } catch (err) {
    if (!(err instanceof UncanonicalQueryError)) throw err;
    fail(
      ['api_query'],
      `api_query cannot be hashed: ${err.message}. Numbers must be finite and strings valid Unicode.`,
    );
  }
  const refresh = 'refresh' in b ? b.refresh : limits.defaultRefresh;
  if (
    typeof refresh !== 'number' ||
    !Number.isInteger(refresh) ||
    refresh < limits.minRefresh ||
    refresh > limits.maxTtl
  )
    fail(
      ['refresh'],
      `refresh must be a whole number of seconds from ${limits.minRefresh} to ${limits.maxTtl} (MAX_TTL); got ${JSON.stringify(refresh)?.slice(0, 50)}.`,
    );
  return { query: query as Record<string, unknown>, refresh: refresh as number };
}

/** Iterative, so a hostile `[[[[…` cannot overflow the stack while we look. */
function depthExceeds(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > max) return true;
    for (const child of Object.values(v))
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return false;
}
