/** The shared redis-server helper does what the cluster tests rely on. */
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisServer } from './redis.ts';

describe('startRedis', () => {
  const servers: RedisServer[] = [];
  afterAll(async () => {
    for (const r of servers) await r.stop();
  });

  it('needs its password, keeps data only with AOF, and restarts on the same port', async () => {
    const r = await startRedis({ password: 'pw-secret-123', aof: true });
    servers.push(r);
    expect(r.url).toBe(`redis://:pw-secret-123@127.0.0.1:${r.port}`);
    expect(await r.cli('SET', 'k', 'v')).toBe('OK');
    const firstPid = r.pid();
    await r.kill();
    await r.restart();
    expect(r.pid()).not.toBe(firstPid);
    expect(await r.cli('GET', 'k')).toBe('v');
    await r.restart({ empty: true });
    expect(await r.cli('GET', 'k')).toBe('');
    expect((await r.info('memory')).used_memory).toMatch(/^\d+$/);
    expect(r.output.join('\n')).not.toContain('pw-secret-123');
  });

  it('without AOF starts empty after a restart, and removes its dir on stop', async () => {
    const r = await startRedis();
    expect(await r.cli('SET', 'k', 'v')).toBe('OK');
    expect(await r.cli('CLIENT', 'KILL', 'TYPE', 'pubsub')).toBe('0');
    await r.restart();
    expect(await r.cli('GET', 'k')).toBe('');
    await r.stop();
    expect(existsSync(r.dir)).toBe(false);
  });
});
