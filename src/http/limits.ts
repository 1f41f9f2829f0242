import http from 'node:http';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';

/** Sees a request before fastify: answers it itself (true), or leaves it to fastify (false). */
export type FrontHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean;

type Limits = Pick<
  Config,
  | 'maxConnections'
  | 'maxConnectionsPerAddress'
  | 'headersTimeoutMs'
  | 'requestTimeoutMs'
  | 'keepAliveTimeoutMs'
  | 'trustProxy'
  | 'maxQueryBytes'
>;

/**
 * Server options that make slow and idle clients cheap (slowloris): headers must arrive within
 * HEADERS_TIMEOUT and the whole request within REQUEST_TIMEOUT of the connection, an idle keep-alive
 * socket goes after KEEP_ALIVE_TIMEOUT, and at most MAX_CONNECTIONS sockets are open at once.
 * There is no socket inactivity timeout: a GET waiting for a pending image is silent by design
 * (ENTRY_WAIT_TIMEOUT bounds it), and the request timeouts already bound what a client sends.
 * `front` sees each request before fastify and may answer it itself (the hot image path); the
 * limits above are the server's, so they hold for it too.
 */
export function serverOptions(
  config: Limits,
  front: FrontHandler = () => false,
): Partial<FastifyServerOptions> {
  return {
    bodyLimit: config.maxQueryBytes,
    // Fastify takes a hop count too (its docs), though its types do not say so.
    trustProxy: config.trustProxy as boolean | string,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: 0,
    serverFactory: (handler) => {
      const server = http.createServer(
        {
          headersTimeout: config.headersTimeoutMs,
          requestTimeout: config.requestTimeoutMs,
          keepAliveTimeout: config.keepAliveTimeoutMs,
          // Node checks the two timeouts above only this often (default 30 s).
          connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs),
        },
        (req, res) => {
          if (!front(req, res)) handler(req, res);
        },
      );
      server.maxConnections = config.maxConnections;
      if (config.maxConnectionsPerAddress > 0)
        capPerAddress(server, config.maxConnectionsPerAddress);
      return server;
    },
  };
}

/**
 * Per-client rate limit for the routes that opt in with `config: { rateLimit: {} }` (POST
 * /requests): by API key name when access control names one, else by client address (which
 * X-Forwarded-For sets only when TRUST_PROXY says so).
 */
export async function installRateLimit(
  app: FastifyInstance,
  config: Pick<Config, 'rateLimitMax' | 'rateLimitWindowMs'>,
): Promise<void> {
  if (config.rateLimitMax === 0) return; // RATE_LIMIT_MAX=0: off
  await app.register(rateLimit, {
    global: false,
    max: config.rateLimitMax,
    timeWindow: config.rateLimitWindowMs,
    keyGenerator: (request) =>
      request.apiKeyName !== undefined ? `key:${request.apiKeyName}` : `ip:${request.ip}`,
    errorResponseBuilder: (_request, context) =>
      new AppError(
        429,
        'Too many requests',
        `More than ${context.max} requests in ${Math.round(config.rateLimitWindowMs / 1000)} s from this client (RATE_LIMIT_MAX). Retry after ${Math.ceil(context.ttl / 1000)} s.`,
        ['request'],
        { headers: { 'retry-after': String(Math.max(1, Math.ceil(context.ttl / 1000))) } },
      ),
  });
}

/**
 * Closes a new socket at once when its address already holds `max` open ones, so one client
 * cannot take every connection slot (slowloris from one host) while others are still served.
 */
function capPerAddress(server: http.Server, max: number): void {
  const open = new Map<string, number>();
  server.on('connection', (socket) => {
    const address = socket.remoteAddress ?? '';
    const n = open.get(address) ?? 0;
    if (n >= max) {
      socket.destroy();
      return;
    }
    open.set(address, n + 1);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
  });
}
