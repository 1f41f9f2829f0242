/**
 * The first, minimal redis-server helper, kept for the imports written against it: it now runs
 * on test/support/redis.ts, the one way tests and benchmarks start redis-server.
 */
import {
  startRedis as startShared,
  type RedisServer as SharedRedisServer,
} from '../support/redis.ts';

export { freePort } from '../support/tmp.ts';

export interface RedisServer extends Omit<SharedRedisServer, 'stop'> {
  /** Stops it (SIGTERM, or the given signal) and waits; `restart()` brings it back with its data. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface RedisServerOptions {
  password?: string;
  appendonly?: boolean;
}

const servers = new Set<SharedRedisServer>();

export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const shared = await startShared({ password: opts.password, aof: opts.appendonly });
  servers.add(shared);
  return Object.create(shared, {
    stop: { value: (signal: NodeJS.Signals = 'SIGTERM') => shared.kill(signal) },
  }) as RedisServer;
}

/** Stops every server this file started and removes their directories. */
export async function stopAllRedis(): Promise<void> {
  await Promise.all([...servers].map((s) => s.stop()));
  servers.clear();
}
