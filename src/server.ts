#!/usr/bin/env node
import { createRequire } from 'node:module';
import { buildApp } from './app.ts';
import { ConfigError, loadConfig, readEnv } from './config.ts';
import { loggerOptions } from './logger.ts';

/** Longest a shutdown may take before in-flight responses are cut off. */
const SHUTDOWN_GRACE_MS = 10_000;

const env = readEnv();
let config;
try {
  config = loadConfig(env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(err.message);
  process.exit(2);
}

const pretty = process.stdout.isTTY && env.NODE_ENV !== 'production' && canResolve('pino-pretty');
const { app } = await buildApp({
  config,
  logger: loggerOptions({ debug: config.debug, level: env.LOG_LEVEL, pretty }),
});
if (config.debug) app.log.debug({ settings: config }, 'effective settings');

process.on('unhandledRejection', (reason) => app.log.error({ err: reason }, 'unhandled rejection'));

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    app.log.info(
      { signal },
      'shutting down: finishing in-flight requests, pending fetches resume at next start',
    );
    setTimeout(() => {
      app.log.warn('shutdown grace period over; exiting');
      process.exit(0);
    }, SHUTDOWN_GRACE_MS).unref();
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        app.log.error({ err }, 'error while shutting down');
        process.exit(1);
      },
    );
  });
}

await app.listen({ host: config.host, port: config.port });

function canResolve(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}
