/**
 * Upstream limits and oddities (issue 9): a body trickled slowly is timed out by the per-attempt
 * timeout, an oversized answer is a final 502, statuses outside 200/4xx/5xx are a 502 "unexpected
 * answer", and a token echoed in a long message never leaks, not even in part.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from '../src/domain/hash.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
import {
  getImage,
  kentikQuery,
  requestImage,
  startService,
  TEST_TOKEN,
  type Service,
} from './helpers/service.ts';

const TIMEOUT_S = 2;
let sim: Simulator;
let svc: Service;
let n = 0;
const fresh = (): Record<string, unknown> => kentikQuery(`limits-${n++}`);
const calls = (q: unknown): number => sim.stats().byHash[queryHash(q)]?.calls ?? 0;

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: TEST_TOKEN });
  svc = await startService({
    KENTIK_API_URL: sim.url,
    KENTIK_API_TIMEOUT: String(TIMEOUT_S),
    KENTIK_API_RETRIES: '2',
    KENTIK_API_BACKOFF: '0.02',
    KENTIK_MAX_IMAGE_BYTES: String(1024 * 1024),
    ENTRY_WAIT_TIMEOUT: '30',
  });
});
afterAll(async () => {
  await svc.stop();
  await sim.close();
});
beforeEach(() => sim.reset());

describe('upstream limits', () => {
  it('times out a body trickled a byte at a time within the timeout (+1 s) per attempt', async () => {
    const q = fresh();
    sim.script([{ kind: 'drip', bytesPerSecond: 20 }]);
    const t0 = performance.now();
    const id = await requestImage(svc.url, q);
    await svc.waitForLog((l) => l.msg === 'kentik call failed' && l.outcome === 'timeout');
    const firstAttemptMs = performance.now() - t0;
    expect(firstAttemptMs).toBeGreaterThanOrEqual(TIMEOUT_S * 1000 - 50);
    expect(firstAttemptMs).toBeLessThan(TIMEOUT_S * 1000 + 1000);
    // The retry is answered normally: a stuck answer costs one attempt, not the fetch.
    const r = await getImage(svc.url, id);
    expect(r.status).toBe(200);
    expect(calls(q)).toBe(2);
  });

  it('four trickling answers at once do not stop other fetches', async () => {
    sim.script(Array.from({ length: 4 }, () => ({ kind: 'drip' as const, bytesPerSecond: 5 })));
    const stuck = Array.from({ length: 4 }, () => fresh());
    const stuckIds = await Promise.all(stuck.map((q) => requestImage(svc.url, q)));
    const other = fresh();
    const t0 = performance.now();
    const r = await getImage(svc.url, await requestImage(svc.url, other));
    expect(r.status).toBe(200);
    // It waited at most for one attempt timeout of the stuck ones to free a slot.
    expect(performance.now() - t0).toBeLessThan(TIMEOUT_S * 1000 + 2000);
    for (const id of stuckIds) expect((await getImage(svc.url, id)).status).toBe(200);
  });

  it('refuses an answer over KENTIK_MAX_IMAGE_BYTES with a final 502, without retrying', async () => {
    const q = fresh();
    sim.script([{ kind: 'oversize', bytes: 8 * 1024 * 1024 }]);
    const r = await getImage(svc.url, await requestImage(svc.url, q));
    expect(r.status).toBe(502);
    expect(r.json).toMatchObject({ type: 'Kentik API bad response', loc: ['upstream'] });
    expect(r.json.msg).toContain('KENTIK_MAX_IMAGE_BYTES');
    expect(calls(q)).toBe(1);
  });

  it('accepts an image just under KENTIK_MAX_IMAGE_BYTES', async () => {
    const q = fresh();
    sim.script([{ kind: 'oversize', bytes: 1000 * 1024 }]);
    // The simulator's oversize bytes are not a real PNG, but they pass the size check: the
    // answer is refused (if at all) for its content, not its size.
    const r = await getImage(svc.url, await requestImage(svc.url, q));
    expect(r.json?.msg ?? '').not.toContain('KENTIK_MAX_IMAGE_BYTES');
  });

  it.each([204, 302, 600, 999])(
    'answers Kentik status %i with 502 "unexpected answer", not retried',
    async (status) => {
      const q = fresh();
      sim.script([{ kind: 'status', status, message: 'odd' }]);
      const r = await getImage(svc.url, await requestImage(svc.url, q));
      expect(r.status).toBe(502);
      expect(r.json.type).toBe('Kentik API bad response');
      expect(r.json.msg).toContain(`unexpected answer: HTTP ${status}`);
      expect(calls(q)).toBe(1);
    },
  );

  it('removes an echoed token before cutting a long message, so no part of it leaks', async () => {
    const q = fresh();
    // The token straddles the 500-character cut: cut first, then scrubbed, its head would remain.
    const message = `${'x'.repeat(492)}${TEST_TOKEN} and more text after it`;
    sim.script([{ kind: 'status', status: 400, message }]);
    const r = await getImage(svc.url, await requestImage(svc.url, q));
    expect(r.status).toBe(400);
    const text = JSON.stringify(r.json);
    expect(text).not.toContain(TEST_TOKEN.slice(0, 8));
    expect(text).toContain('xxx[REDA');
    await svc.waitForLog((l) => l.msg === 'kentik call failed' && String(l.err).includes('xxxxx'));
    expect(svc.output.filter((l) => l.includes(TEST_TOKEN.slice(0, 8)))).toEqual([]);
  });
});

describe('KENTIK_API_URL credentials', () => {
  it('are redacted in configuration errors and the DEBUG dump', async () => {
    const bad = await startService(
      { KENTIK_API_URL: 'ftp://alice:pw-SECRET@proxy.example/api', KENTIK_API_RETRIES: 'x' },
      { expectFail: true },
    );
    expect(await bad.exited).toBe(2);
    expect(bad.output.join('\n')).toContain('ftp://[REDACTED]@proxy.example/api');
    expect(bad.output.join('\n')).not.toContain('pw-SECRET');

    const dbg = await startService({
      KENTIK_API_URL: 'http://alice:pw-SECRET@127.0.0.1:9/api/v5',
      DEBUG: '1',
    });
    await dbg.waitForLog((l) => l.msg === 'effective settings');
    await dbg.stop();
    expect(dbg.output.join('\n')).toContain('http://[REDACTED]@127.0.0.1:9/api/v5');
    expect(dbg.output.join('\n')).not.toContain('pw-SECRET');
  });
});
