import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { canonicalQuery, UncanonicalQueryError, type CanonicalQuery } from '../domain/hash.ts';
import type { ImageCache } from '../cache/image-cache.ts';
import { ID_PATTERN_SOURCE } from '../domain/ids.ts';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import type { BodyParser } from '../http/json-body.ts';
import { errorResponse } from './schemas.ts';

/** Kentik queries nest 5–6 levels; anything deeper is not a query and would cost stack to hash. */
const MAX_QUERY_DEPTH = 64;

export const requestRoutes: FastifyPluginAsyncTypebox<{
  cache: ImageCache;
  config: Config;
  /** The JSON body parser (app.ts): it keeps the query hash of bodies it has seen before. */
  bodies: BodyParser;
}> = async (app, { cache, config, bodies }) => {
  // The path exists, just not for these methods: say which ones it has.
  app.route({
    method: ['GET', 'PUT', 'PATCH', 'DELETE'],
    url: '/requests',
    schema: { hide: true },
    handler: async (request) => {
      throw new AppError(
        405,
        'Method not allowed',
        `${request.method} is not allowed on /requests: POST a JSON body {"api_query": {…}, "ttl": seconds} to it. GET /image/{id} fetches an image; GET / shows the dashboard.`,
        ['method'],
        { headers: { allow: 'POST' } },
      );
    },
  });

  app.post(
    '/requests',
    {
      // API key when API_KEYS is set; per-client rate limit (src/http/limits.ts).
      config: { access: 'api-key', rateLimit: {} },
      schema: {
        summary: 'Request a chart image',
        description:
          'Answers at once with an image id; the image is fetched from Kentik in the background. ' +
          'Identical queries (same JSON up to key order) share one upstream call. GET /image/{id} serves it.',
        tags: ['images'],
        body: Type.Object(
          {
            api_query: Type.Object(
              {},
              {
                additionalProperties: true,
                description: 'The Kentik topXchart query, forwarded to Kentik unchanged',
                examples: [
                  {
                    queries: [
                      {
                        bucket: 'Left +Y Axis',
                        isOverlay: false,
                        query: {
                          metric: ['bytes'],
                          dimension: ['Traffic'],
                          topx: 8,
                          lookback_seconds: 3600,
                          viz_type: 'stackedArea',
                        },
                      },
                    ],
                    imageType: 'png',
                  },
                ],
              },
            ),
            ttl: Type.Optional(
              Type.Integer({
                minimum: 1,
                maximum: config.maxTtl,
                // Swagger's "Try it out" pre-fills this; without it, it would offer 1 s.
                examples: [config.defaultTtl],
                description: `Seconds the image stays available (default ${config.defaultTtl}, at most ${config.maxTtl})`,
              }),
            ),
          },
          // A typo such as "ttL" must not silently fall back to the default ttl.
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            id: Type.String({
              pattern: ID_PATTERN_SOURCE,
              description: '<sha256 of the query>_<expiry epoch seconds>',
            }),
          }),
          400: errorResponse('The body is not JSON, or api_query / ttl are missing or invalid'),
          401: errorResponse('API_KEYS is set and no valid key was sent'),
          413: errorResponse(
            `The body is larger than ${config.maxQueryBytes} bytes (MAX_QUERY_BYTES)`,
          ),
          415: errorResponse('The Content-Type is not application/json'),
          429: errorResponse(
            'This client sent more than RATE_LIMIT_MAX requests in RATE_LIMIT_WINDOW',
          ),
          503: errorResponse(
            'Too many fetches are waiting for Kentik (MAX_PENDING), or the entry could not be saved; retry after Retry-After',
          ),
          507: errorResponse('The entry could not be saved: the cache disk is full'),
        },
      },
    },
    async (request) => {
      const { api_query: query, ttl = config.defaultTtl } = request.body;
      // A body sent before (the same text) was checked and hashed then.
      let canonical = bodies.knownQuery(request.body);
      if (canonical === undefined) {
        canonical = checkedCanonical(query);
        bodies.rememberQuery(request.body, canonical);
      }
      const { id, result } = await cache.request(query, ttl, canonical);
      // In the request's own log line (app.ts), not a second line.
      request.logFields = { imageId: id, result };
      return { id };
    },
  );
};

/** canonicalQuery(query), or a 400 naming what keeps the query from being hashed. */
function checkedCanonical(query: object): CanonicalQuery {
  if (depthExceeds(query, MAX_QUERY_DEPTH)) {
    throw new AppError(
      400,
      'Validation error',
      `api_query is nested deeper than ${MAX_QUERY_DEPTH} levels; a Kentik query is a shallow JSON object.`,
      ['body', 'api_query'],
    );
  }
  try {
    return canonicalQuery(query);
  } catch (err) {
    if (!(err instanceof UncanonicalQueryError)) throw err;
    throw new AppError(
      400,
      'Validation error',
      `api_query cannot be hashed: ${err.message}. Numbers must be finite (no 1e400) and strings valid Unicode (no lone \\uD800 surrogates).`,
      ['body', 'api_query'],
    );
  }
}

/** Iterative, so a hostile 1 MiB of `[[[[…` cannot overflow the stack while we look. */
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
