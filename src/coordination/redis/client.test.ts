import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, stopAllRedis, type RedisServer } from '../../../test/helpers/redis-server.ts';
import { Secret } from '../../secret.ts';
import { createRedisLink, RedisUnavailable, type RedisLink } from './client.ts';

let redis: RedisServer;
let link: RedisLink;

beforeAll(async () => {
  redis = await startRedis();
  link = createRedisLink(new Secret(redis.url), () => {});
  await link.connect();
});
afterAll(async () => {
  await link?.close();
  await stopAllRedis();
});

/** Holds the event loop the way a CPU-starved replica does: nothing else runs meanwhile. */
function blockEventLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe('Redis link deadlines', () => {
  it('does not call Redis unreachable when the answer waited behind our own blocked event loop', async () => {
    const answer = link.command(['PING']);
    blockEventLoop(1500);
    await expect(answer).resolves.toBe('PONG');
  });

  it('answers every command of a burst that was in flight while the event loop was blocked', async () => {
    const answers = Array.from({ length: 200 }, (_, i) => link.command(['ECHO', String(i)]));
    blockEventLoop(1200);
    const got = await Promise.all(answers);
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => String(i)));
  });

  it('still reports a Redis that stopped answering, within about a second', async () => {
    const proc = redis.proc;
    if (!proc) throw new Error('redis-server is not running');
    proc.kill('SIGSTOP');
    try {
      const started = performance.now();
      const err = await link.command(['PING']).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RedisUnavailable);
      expect(performance.now() - started).toBeLessThan(2000);
    } finally {
      proc.kill('SIGCONT');
    }
  });
});
