import type { FastifyServerOptions } from 'fastify';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * Structured JSON logs (pino) in production; pino-pretty when a developer watches a terminal.
 * Credential headers are redacted in case anything ever logs a raw request. The Kentik token
 * needs no path of its own: it is a Secret, which serializes as "[REDACTED]" wherever it is logged.
 * (A wildcard path such as `*.ktAuthToken` made every log line ~75 % dearer: pino then walks each
 * line's top-level keys.)
 */
export function loggerOptions(opts: {
  debug: boolean;
  level?: string | undefined;
  pretty: boolean;
}): Exclude<FastifyServerOptions['logger'], undefined> {
  const level = opts.debug
    ? 'debug'
    : opts.level && LEVELS.includes(opts.level)
      ? opts.level
      : 'info';
  return {
    level,
    redact: {
      paths: [
        'req.headers["x-ch-auth-api-token"]',
        'req.headers.authorization',
        'headers["x-ch-auth-api-token"]',
      ],
      censor: '[REDACTED]',
    },
    ...(opts.pretty
      ? {
          transport: {
            target: 'pino-pretty',
            options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' },
          },
        }
      : {}),
  };
}
