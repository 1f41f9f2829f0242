import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiKey } from '../config.ts';
import { AppError } from '../errors.ts';
import type { Secret } from '../secret.ts';

/**
 * What a route asks of its caller, set in its route options: `config: { access: 'api-key' }`.
 * Routes without it are open. A new write endpoint (a dashboard's data, `PUT /charts/…`) opts in
 * with that one line; the check, the 401 and the logging stay here.
 *   - `api-key`: one of API_KEYS, when API_KEYS / API_KEYS_FILE is set (else open).
 *   - `metrics`: METRICS_KEY, when it is set (else open).
 */
export type Access = 'api-key' | 'metrics';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    /** Name of the API key that authenticated this request (never the key itself). */
    apiKeyName: string | undefined;
  }
}

interface Digested {
  name: string;
  digest: Buffer;
}

/** Keys are compared as SHA-256 digests: equal length, so timingSafeEqual never leaks the length. */
const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

/** The key a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>`. */
export function presentedKey(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth);
    if (m) return m[1];
  }
  const header = request.headers['x-api-key'];
  const value = Array.isArray(header) ? header[0] : header;
  return value?.trim() || undefined;
}

/**
 * Looks up `presented` among `keys`, touching every key whatever matches, so the time taken says
 * nothing about which key (or how much of one) was right.
 */
export function matchKey(
  keys: readonly Digested[],
  presented: string | undefined,
): string | undefined {
  const d = digest(presented ?? '');
  let found: string | undefined;
  for (const k of keys)
    if (timingSafeEqual(k.digest, d) && presented !== undefined) found ??= k.name;
  return found;
}

const unauthorized = (what: string, hint: string): AppError =>
  new AppError(401, 'Unauthorized', `${what} ${hint}`, ['header', 'authorization'], {
    headers: { 'www-authenticate': 'Bearer' },
  });

/**
 * Installs access control on the root instance (before any route): one onRequest hook that
 * enforces each route's `access`. It runs before the body is read, so an unauthenticated client
 * cannot make the service parse a megabyte.
 */
export function installAccessControl(
  app: FastifyInstance,
  { apiKeys, metricsKey }: { apiKeys: readonly ApiKey[]; metricsKey: Secret | undefined },
): void {
  {
    const keys = apiKeys.map((k) => ({ name: k.name, digest: digest(k.key.reveal()) }));
    const metrics = metricsKey ? [{ name: 'metrics', digest: digest(metricsKey.reveal()) }] : [];
    app.decorateRequest('apiKeyName', undefined);
    app.addHook('onRequest', async (request: FastifyRequest, _reply: FastifyReply) => {
      const access = request.routeOptions.config?.access;
      if (access === undefined) return;
      const required = access === 'metrics' ? metrics : keys;
      if (required.length === 0) return;
      const presented = presentedKey(request);
      const name = matchKey(required, presented);
      if (name === undefined) {
        request.log.info(
          { reason: presented === undefined ? 'no key' : 'unknown key' },
          'request refused: not authorised',
        );
        throw access === 'metrics'
          ? unauthorized(
              presented === undefined
                ? 'This endpoint needs METRICS_KEY:'
                : 'The key is not METRICS_KEY:',
              'send it as Authorization: Bearer <key>.',
            )
          : unauthorized(
              presented === undefined ? 'An API key is required:' : 'The API key is not valid:',
              'send one of the configured API_KEYS as Authorization: Bearer <key> or X-API-Key: <key>.',
            );
      }
      request.apiKeyName = name;
    });
  }
}
