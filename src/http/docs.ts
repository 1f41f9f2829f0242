import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Headers of the inner answer that belong to its own connection, not to the one we answer on. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'date']);

/**
 * Swagger UI at `/docs`, loaded when it is first asked for. Registering @fastify/swagger-ui at
 * start-up costs every start its module graph, @fastify/static and a read of its files, for a page
 * people open now and then. Here the first GET builds a small inner Fastify instance that serves
 * the UI over the service's own OpenAPI document (static mode), and every `/docs` request is
 * answered through it with `inject`: the outer route keeps the service's hooks (access control,
 * request log, metrics) and the answer is the plugin's own, byte for byte.
 */
export function lazyDocs(app: FastifyInstance, prefix = '/docs'): void {
  let inner: Promise<FastifyInstance> | undefined;
  const load = (): Promise<FastifyInstance> =>
    (inner ??= (async () => {
      const [{ default: Fastify }, { default: swagger }, { default: swaggerUi }] =
        await Promise.all([
          import('fastify'),
          import('@fastify/swagger'),
          import('@fastify/swagger-ui'),
        ]);
      const docs = Fastify({ logger: false });
      await docs.register(swagger, {
        mode: 'static',
        specification: { document: app.swagger() as never },
      });
      await docs.register(swaggerUi, { routePrefix: prefix, logo: undefined });
      await docs.ready();
      return docs;
    })().catch((err: unknown) => {
      inner = undefined; // a failed load is tried again by the next request
      throw err;
    }));

  const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const docs = await load();
    const res = await docs.inject({
      method: request.method as 'GET' | 'HEAD',
      url: request.url,
      headers: request.headers,
    });
    for (const [name, value] of Object.entries(res.headers))
      if (value !== undefined && !HOP_BY_HOP.has(name.toLowerCase())) reply.header(name, value);
    return reply.code(res.statusCode).send(res.rawPayload);
  };
  const hidden = { schema: { hide: true } };
  app.get(prefix, hidden, handler);
  app.get(`${prefix}/*`, hidden, handler);
}
