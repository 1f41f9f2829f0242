#!/usr/bin/env node
import { createRequire } from 'node:module';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { buildApp } from './app.ts';
import { ConfigError, loadConfig, printableConfig, readEnv } from './config.ts';
import { loggerOptions } from './logger.ts';
import { CachePathLockedError } from './store/lock.ts';

/**
 * A shutdown ends within this bound whatever clients do: responses still being sent after half of
 * it are cut off, and the process exits at the end of it. Waiting GETs are answered at once and the
 * snapshot is saved first (see the preClose hook in app.ts), so cutting off costs nothing durable.
 */
const SHUTDOWN_GRACE_MS = 10_000;
/** Heap size from which a start gives back the garbage of loading the index (releaseLoadGarbage). */
const RELEASE_ABOVE_BYTES = 48 * 2 ** 20;
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost|::ffff:127\.\d+\.\d+\.\d+)$/i;

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
let built;
holdYoungGeneration(true);
try {
  built = await buildApp({
    config,
    logger: loggerOptions({ debug: config.debug, level: env.LOG_LEVEL, pretty }),
  });
} catch (err) {
  if (!(err instanceof CachePathLockedError)) throw err;
  console.error(err.message);
  process.exit(3);
} finally {
  holdYoungGeneration(false);
}
const { app } = built;
releaseLoadGarbage();
if (config.debug) app.log.debug({ settings: printableConfig(config) }, 'effective settings');
if (config.apiKeys.length === 0 && !LOOPBACK.test(config.host)) {
  app.log.warn(
    { host: config.host },
    'API_KEYS is not set and HOST is not a loopback address: anyone who can reach this port can request charts (spending the Kentik quota) and list the cache. Set API_KEYS or API_KEYS_FILE.',
  );
}

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
      app.log.warn('responses still in progress at shutdown are cut off');
      app.server.closeAllConnections();
    }, SHUTDOWN_GRACE_MS / 2).unref();
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

/**
 * While the index loads, the young generation keeps its start size. Nearly everything a load
 * allocates is kept (the entries), and the scavenger, seeing most objects survive, would grow the
 * young generation to its maximum (64 MB) and keep it until a memory-reducing collection. Held at
 * its start size, the same load takes the same CPU and ends with a heap of some 60 MB instead of
 * 120 MB for 100k entries. The factor is V8's default again afterwards (the young generation
 * grows for requests as before).
 */
function holdYoungGeneration(hold: boolean): void {
  v8.setFlagsFromString(`--semi-space-growth-factor=${hold ? 1 : 2}`);
}

/**
 * Loading a large index still leaves garbage (records read and parsed, the maps of the load, the
 * tables the index outgrew) that V8 keeps as committed pages. Once the heap is over
 * RELEASE_ABOVE_BYTES, one memory-reducing collection before listening gives them back (100k
 * entries: RSS about 150 → 125 MB for some 100 ms, once, while nothing waits yet). Small starts
 * skip it.
 */
function releaseLoadGarbage(): void {
  if (v8.getHeapStatistics().total_heap_size < RELEASE_ABOVE_BYTES) return;
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as ((options: object) => void) | undefined;
  gc?.({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

function canResolve(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}
