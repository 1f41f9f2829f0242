import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
} from 'fastify';
import { installAccessControl } from './auth/api-keys.ts';
import { ImageCache } from './cache/image-cache.ts';
import { createMaintenance, type Maintenance } from './cache/maintenance.ts';
import { registerCharts } from './charts/index.ts';
import type { Config } from './config.ts';
import { Activity, recordingClient } from './dashboard/activity.ts';
import { dashboardApi } from './dashboard/api.ts';
import { dashboardPage } from './dashboard/page.ts';
import { AppError } from './errors.ts';
import type { Coordinator } from './coordination/coordinator.ts';
import { LocalCoordinator } from './coordination/local.ts';
import { createKentikClient, type KentikClient } from './kentik/client.ts';
import { lazyDocs } from './http/docs.ts';
import { BodyParser } from './http/json-body.ts';
import { lazySchemaCompilers } from './http/lazy-schemas.ts';
import { installRateLimit, serverOptions, type FrontHandler } from './http/limits.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { hotImagePath } from './routes/hot-image.ts';
import { HotRequestLog } from './routes/hot-request-log.ts';
import { imageRoutes } from './routes/images.ts';
import { infoRoutes } from './routes/info.ts';
import { operationRoutes } from './routes/operations.ts';
import { requestRoutes } from './routes/requests.ts';
import { ErrorBody } from './routes/schemas.ts';
import { FsStore } from './store/fs-store.ts';
import { StoreReadError, type Store } from './store/store.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** What a route adds to its request's log line (one line per request, written onResponse). */
    logFields: Record<string, unknown> | undefined;
  }
}

/** Log levels at which the per-request `info` line is written. */
const LOGS_INFO = new Set(['info', 'debug', 'trace']);
const VERSION = '0.1.0';

export interface AppDeps {
  config: Config;
  /** A pino logger or logger options; false for silence (tests that build the app in-process). */
  logger: FastifyBaseLogger | boolean | object;
  store?: Store;
  client?: KentikClient;
}

export interface App {
  app: FastifyInstance;
  cache: ImageCache;
  coordinator: Coordinator;
  maintenance: Maintenance;
  metrics: Metrics;
}

/**
 * Builds the whole service: store, Kentik client, cache, maintenance and routes. Loads the cache
 * index before returning, so the app can listen and be ready at once.
 */
export async function buildApp({
  config,
  logger,
  store: givenStore,
  client: givenClient,
}: AppDeps): Promise<App> {
  // The hot image path, set once the cache exists; the server (made inside Fastify()) asks it first.
  const front: { hot?: FrontHandler } = {};
  const app = Fastify({
    ...(typeof logger === 'object' && 'info' in logger
      ? { loggerInstance: logger as FastifyBaseLogger }
      : { logger }),
    // Body limit, proxy trust, server timeouts and the connection cap (src/http/limits.ts).
    // The hot image path sees each request first (src/routes/hot-image.ts).
    ...serverOptions(config, (req, res) => front.hot?.(req, res) ?? false),
    // We log one line per request ourselves (onResponse), not Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // Ids are 87 characters at most, but a longer one is still just an unknown id: let it reach
    // the handler (Node itself caps the whole request line at 16 KiB).
    routerOptions: { maxParamLength: 16 * 1024 },
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    // Route schemas are compiled on first use, not at every start (src/http/lazy-schemas.ts).
    schemaController: { compilersFactory: lazySchemaCompilers },
    ajv: {
      // api_query is forwarded unchanged and ttl must really be an integer: no coercion, no stripping.
      customOptions: {
        coerceTypes: false,
        removeAdditional: false,
        useDefaults: false,
        allErrors: false,
      },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  const metrics = createMetrics();
  const coordinator = await createCoordinator({
    config,
    store: givenStore,
    log: app.log.child({ component: 'coordination' }),
    metrics,
  });
  const activity = new Activity();
  const client = recordingClient(
    givenClient ??
      createKentikClient({ config, log: app.log.child({ component: 'kentik' }), metrics }),
    activity,
  );
  const cache = new ImageCache({
    config,
    coordinator,
    client,
    log: app.log.child({ component: 'cache' }),
    metrics,
  });
  const maintenance = createMaintenance({
    config,
    cache,
    log: app.log.child({ component: 'maintenance' }),
    metrics,
  });

  const bodies = new BodyParser();
  // Only JSON is accepted: anything else is a 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');
  // Our own JSON parser, so a client learns where its JSON is broken, and valid JSON that carries a
  // prototype-poisoning key is refused as such rather than called "not valid JSON". It remembers
  // recent bodies (a dashboard POSTs the same query again and again): src/http/json-body.ts.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'string', bodyLimit: config.maxQueryBytes },
    (_request, body, done) => {
      try {
        done(null, bodies.parse(body as string));
      } catch (err) {
        done(err as Error, undefined);
      }
    },
  );

  app.addSchema(ErrorBody);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Kentik Image Cache',
        version: VERSION,
        description:
          "A cache in front of Kentik's `POST /query/topXchart`. POST a query to `/requests`, get an image id at once, " +
          'and GET `/image/{id}` from anywhere: identical queries share one upstream call, and images are kept on disk for their ttl. ' +
          'Every error answer is JSON `{"type", "loc", "msg"}`.',
      },
      tags: [
        { name: 'images', description: 'Request and fetch chart images' },
        { name: 'operations', description: 'Health, readiness, metrics and cache contents' },
        { name: 'dashboard', description: 'The page at / and the data behind it' },
        {
          name: 'charts',
          description: 'Named live charts: one stable URL that always shows a fresh image',
        },
      ],
    },
  });
  // Swagger UI is loaded when /docs is first asked for, not at every start (src/http/docs.ts).
  lazyDocs(app);
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  installAccessControl(app, { apiKeys: config.apiKeys, metricsKey: config.metricsKey });
  await installRateLimit(app, config);

  app.setErrorHandler((error: FastifyError | AppError, request, reply) => {
    const { status, body, headers } = toErrorResponse(error, config);
    if (status >= 500 && !(error instanceof AppError))
      request.log.error({ err: error }, 'unhandled error');
    if (headers) reply.headers(headers);
    return reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({
      type: 'Not found',
      loc: ['path'],
      msg: `No route for ${request.method} ${request.url.slice(0, 200)}. See /docs for the API.`,
    }),
  );

  app.decorateRequest('logFields', undefined);
  // The metric children of each route, method and status, bound once: passing label objects costs
  // prom-client a conversion and a hash per request (the profile of a fan-in's 500 answers). Routes
  // are the registered patterns, methods those Node's parser accepts, statuses ours: a few dozen.
  const bound = new Map<
    string,
    {
      count: ReturnType<Metrics['httpRequests']['labels']>;
      duration: ReturnType<Metrics['httpDuration']['labels']>;
    }
  >();
  const httpMetrics = (route: string, method: string, status: number) => {
    const key = `${route} ${method} ${status}`;
    let m = bound.get(key);
    if (!m) {
      m = {
        count: metrics.httpRequests.labels(route, method, String(status)),
        duration: metrics.httpDuration.labels(route),
      };
      bound.set(key, m);
    }
    return m;
  };
  // One log line per request, with its outcome and duration, and the HTTP metrics.
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const http = httpMetrics(route, request.method, reply.statusCode);
    http.count.inc();
    http.duration.observe(reply.elapsedTime / 1000);
    if (route === '/image/:id' && (reply.statusCode === 200 || reply.statusCode === 304))
      activity.served((request.params as { id: string }).id);
    // Only built when it is written: at LOG_LEVEL=warn a hot image would build it thousands of times a second for nothing.
    if (LOGS_INFO.has(request.log.level)) {
      request.log.info(
        {
          method: request.method,
          url: request.url.slice(0, 200),
          statusCode: reply.statusCode,
          durationMs: Math.round(reply.elapsedTime * 10) / 10,
          ...(request.apiKeyName !== undefined ? { apiKey: request.apiKeyName } : {}),
          ...request.logFields,
        },
        'request',
      );
    }
    done();
  });

  await app.register(requestRoutes, { cache, config, bodies });
  await app.register(imageRoutes, { cache, config });
  const hotLog = new HotRequestLog(app.log.child({ component: 'http' }));
  front.hot = hotImagePath({ cache, metrics, activity, log: hotLog });
  await app.register(infoRoutes, { cache, activity });
  await app.register(operationRoutes, { cache, metrics });
  // Charts before the dashboard, which lists them.
  const charts = await registerCharts(app, { config, cache, metrics });
  await app.register(dashboardPage);
  await app.register(dashboardApi, {
    cache,
    config,
    metrics,
    activity,
    backend: coordinator.backend,
    charts,
  });

  // Before the server stops taking requests: waiting GETs are answered 503 at once (not held until
  // the grace period ends), fetches stop and the snapshot is saved, whatever slow clients still do.
  app.addHook('preClose', async () => {
    cache.beginClose();
    await maintenance.stop();
    await cache.close();
  });
  app.addHook('onClose', async () => {
    hotLog.close();
    await maintenance.stop();
    await cache.close();
    await client.close();
    await coordinator.close();
  });

  const loaded = await cache.load();
  app.log.info(
    {
      ...loaded,
      backend: coordinator.backend,
      ...(config.cacheBackend === 'filesystem' ? { cachePath: config.cachePath } : {}),
    },
    'cache loaded',
  );
  maintenance.start();
  return { app, cache, coordinator, maintenance, metrics };
}

/** The coordinator CACHE_BACKEND asks for. */
async function createCoordinator(deps: {
  config: Config;
  store: Store | undefined;
  log: FastifyBaseLogger;
  metrics: Metrics;
}): Promise<Coordinator> {
  const { config, log, metrics } = deps;
  if (config.cacheBackend === 'redis') {
    const { RedisCoordinator } = await import('./coordination/redis/redis-coordinator.ts');
    return new RedisCoordinator({ config, log, metrics });
  }
  const store = deps.store ?? new FsStore(config.cachePath);
  return new LocalCoordinator({ config, store, log, metrics });
}

/** The one place that decides what an error looks like to a client. */
export function toErrorResponse(
  error: FastifyError | AppError,
  config: Pick<Config, 'maxTtl' | 'maxQueryBytes'>,
): {
  status: number;
  body: { type: string; loc: (string | number)[]; msg: string };
  headers?: Record<string, string>;
} {
  if (error instanceof StoreReadError) {
    return {
      status: 503,
      body: {
        type: 'Storage unavailable',
        loc: ['storage'],
        msg: `${error.message}. The stored data exists but cannot be read: check the permissions and layout of CACHE_PATH, then retry.`,
      },
      headers: { 'retry-after': '30' },
    };
  }
  if (error instanceof AppError) {
    return {
      status: error.statusCode,
      body: { type: error.type, loc: error.loc, msg: error.message },
      headers: error.headers,
    };
  }
  const e = error as FastifyError;
  if (e.validation) {
    const first = e.validation[0];
    const where = e.validationContext ?? 'body';
    const path = (first?.instancePath ?? '').split('/').filter(Boolean);
    const missing = (first?.params as { missingProperty?: string } | undefined)?.missingProperty;
    const field = missing ?? path[0];
    const loc = [where, ...(missing ? [missing] : path)];
    const extra = (first?.params as { additionalProperty?: string } | undefined)
      ?.additionalProperty;
    let msg: string;
    if (first?.keyword === 'additionalProperties' && where === 'body' && extra !== undefined) {
      const near = ['api_query', 'ttl'].find((k) => k.toLowerCase() === extra.toLowerCase());
      return {
        status: 400,
        body: {
          type: 'Validation error',
          loc: ['body', extra],
          msg: `Unknown key ${JSON.stringify(extra.slice(0, 100))} in the body${near ? ` (did you mean "${near}"? keys are case-sensitive)` : ''}: only api_query and ttl are accepted.`,
        },
      };
    } else if (where === 'querystring' && field === 'cursor') {
      msg =
        'cursor is not one this service handed out: pass next_cursor of the previous page unchanged, or omit it for the first page.';
    } else if (where === 'querystring' && field === 'limit') {
      msg =
        'limit must be a whole number of entries from 0 to 100000, written in digits (e.g. ?limit=50).';
    } else if (where === 'body' && field === 'api_query') {
      msg = missing
        ? 'api_query is required: send {"api_query": {…Kentik topXchart query…}, "ttl": seconds}.'
        : 'api_query must be a JSON object (the Kentik topXchart query), not null, an array or a scalar.';
    } else if (where === 'body' && field === 'ttl') {
      msg = `ttl must be a whole number of seconds from 1 to ${config.maxTtl} (MAX_TTL); got an invalid value (${first?.message ?? 'invalid'}).`;
    } else if (where === 'body' && !field) {
      msg = 'The body must be a JSON object: {"api_query": {…}, "ttl": seconds}.';
    } else {
      msg = `${loc.join('.')} ${first?.message ?? 'is invalid'}.`;
    }
    return { status: 400, body: { type: 'Validation error', loc, msg } };
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        status: 413,
        body: {
          type: 'Payload too large',
          loc: ['body'],
          msg: `The body is larger than ${config.maxQueryBytes} bytes (MAX_QUERY_BYTES). A Kentik query is a few KB; send only the query.`,
        },
      };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        status: 415,
        body: {
          type: 'Unsupported media type',
          loc: ['header', 'content-type'],
          msg: 'The body must be JSON: send it with Content-Type: application/json.',
        },
      };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return {
        status: 400,
        body: {
          type: 'Validation error',
          loc: ['body'],
          msg: 'The body is empty: send {"api_query": {…}, "ttl": seconds} as JSON.',
        },
      };
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return {
        status: 400,
        body: {
          type: 'Bad request',
          loc: ['header', 'content-length'],
          msg: 'Content-Length does not match the body sent.',
        },
      };
  }
  if (e instanceof SyntaxError || e.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return {
      status: 400,
      body: {
        type: 'Invalid JSON',
        loc: ['body'],
        msg: `The body is not valid JSON (${e.message.slice(0, 200)}). Send {"api_query": {…}, "ttl": seconds}.`,
      },
    };
  }
  const status = e.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    return {
      status,
      body: { type: 'Bad request', loc: ['request'], msg: `${e.message.slice(0, 300)}.` },
    };
  }
  return {
    status: 500,
    body: {
      type: 'Internal error',
      loc: [],
      msg: 'Something went wrong inside the cache; it was logged. Retry, and report it if it persists.',
    },
  };
}
