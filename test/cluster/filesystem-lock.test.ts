/**
 * Issue 8, behaviour 12: filesystem mode is one process per CACHE_PATH. Two processes on one
 * directory would each delete the other's files in maintenance, so the second refuses to start,
 * names the process that holds the directory and points to CACHE_BACKEND=redis.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { buildService } from '../support/build.ts';
import { removeDir, startService, tempDir, TEST_TOKEN } from '../support/index.ts';

let sim: Simulator;
const cachePath = tempDir('kic-lock-');

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: TEST_TOKEN });
});
afterAll(async () => {
  await sim.close();
  removeDir(cachePath);
});

describe('one process per CACHE_PATH', () => {
  it('a second process on a CACHE_PATH in use refuses to start, naming the first and CACHE_BACKEND=redis', async () => {
    const entry = await buildService();
    const env = { KENTIK_API_URL: sim.url };
    const first = await startService(env, { cachePath, entry });
    try {
      const second = await startService(env, { cachePath, entry, expectFail: true });
      const outcome = await Promise.race([
        second.exited.then((code) => `exited with ${code}`),
        second
          .waitForLog((l) => l.msg.startsWith('Server listening at '), 30_000)
          .then(() => 'listening'),
      ]);
      await second.stop();
      expect(outcome, 'the second process must refuse to start').toMatch(/^exited with [1-9]/);
      const text = second.output.join('\n');
      expect(text).toContain(String(first.pid));
      expect(text).toContain('CACHE_BACKEND=redis');
      // The first one is untouched.
      expect((await fetch(`${first.url}/readyz`)).status).toBe(200);
    } finally {
      await first.stop();
    }
    // Once the first has stopped, the directory is free again.
    const third = await startService(env, { cachePath, entry });
    await third.stop();
  });
});
