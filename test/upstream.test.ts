import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from '../src/domain/hash.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
import {
  expectNoSecret,
  getImage,
  getJson,
  kentikQuery,
  metric,
  requestImage,
  startService,
  type Service,
} from './support/index.ts';

const RETRIES = 2;
// Per-attempt timeout. Longer than the simulator takes to draw a new chart on a loaded two-core
// machine (0.5 s was not: a slow render timed out and was retried, so call counts were off by one).
const TIMEOUT_S = 2;

let sim: Simulator;
let svc: Service;
let n = 0;
const fresh = (): Record<string, unknown> => kentikQuery(`upstream-${n++}`);
const calls = (q: unknown): number => sim.stats().byHash[queryHash(q)]?.calls ?? 0;

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  svc = await startService({
    KENTIK_API_URL: sim.url,
    KENTIK_API_RETRIES: String(RETRIES),
    KENTIK_API_TIMEOUT: String(TIMEOUT_S),
    KENTIK_API_BACKOFF: '0.02',
    ENTRY_WAIT_TIMEOUT: '20',
  });
});
afterAll(async () => {
  await svc.stop();
  expectNoSecret(svc.output);
  await sim.close();
});
beforeEach(() => sim.reset());

describe('Kentik upstream', () => {
  it.each([429, 502, 503, 504])('retries %i and then succeeds', async (status) => {
    const q = fresh();
    sim.script([{ kind: 'status', status, retryAfter: '0' }]);
    const r = await getImage(svc.url, await requestImage(svc.url, q));
    expect(r.status).toBe(200);
    expect(calls(q)).toBe(2);
  });

  it.each([429, 502, 503, 504])(
    "gives up on %i after KENTIK_API_RETRIES and serves Kentik's status",
    async (status) => {
      const q = fresh();
      sim.script(
        Array.from({ length: RETRIES + 1 }, () => ({
          kind: 'status' as const,
          status,
          retryAfter: '0',
          message: `upstream says ${status}`,
        })),
      );
      const r = await getImage(svc.url, await requestImage(svc.url, q));
      expect(r.status).toBe(status);
      expect(r.json).toMatchObject({
        type: 'Kentik API error',
        msg: expect.stringContaining(`upstream says ${status}`),
      });
      expect(r.json.msg).toContain(`after ${RETRIES + 1} attempts`);
      expect(calls(q)).toBe(RETRIES + 1);
    },
  );

  it.each([400, 401, 403, 404, 500])('does not retry %i', async (status) => {
    const q = fresh();
    sim.script([{ kind: 'status', status, message: `final ${status}` }]);
    const r = await getImage(svc.url, await requestImage(svc.url, q));
    expect(r.status).toBe(status);
    expect(r.json.msg).toContain(`final ${status}`);
    expect(calls(q)).toBe(1);
  });

  it('honours Retry-After in seconds', async () => {
    const q = fresh();
    sim.script([{ kind: 'status', status: 429, retryAfter: '1' }]);
    const t0 = Date.now();
    const r = await getImage(svc.url, await requestImage(svc.url, q));
    expect(r.status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
  });

  it('honours Retry-After as an HTTP date', async () => {
    const q = fresh();
    const at = new Date(Date.now() + 2000).toUTCString(); // whole seconds: at least ~1 s away
    sim.script([{ kind: 'status', status: 503, retryAfter: at }]);
    const t0 = Date.now();
    const r = await getImage(svc.url, await requestImage(svc.url, q));
    expect(r.status).toBe(200);
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(at));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
  });

  it('times out a hanging Kentik per attempt and answers 504 after all retries', async () => {
    const q = fresh();
    sim.script(Array.from({ length: RETRIES + 1 }, () => ({ kind: 'hang' as const })));
    const r = await getImage(svc.url, await requestImage(svc.url, q));
    expect(r.status).toBe(504);
    expect(r.json).toMatchObject({
      type: 'Kentik API unavailable',
      msg: expect.stringContaining(`no answer within ${TIMEOUT_S} s`),
    });
    expect(calls(q)).toBe(RETRIES + 1);
  });

  it('retries a connection reset', async () => {
    const q = fresh();
    sim.script([{ kind: 'reset' }]);
    expect((await getImage(svc.url, await requestImage(svc.url, q))).status).toBe(200);
    expect(calls(q)).toBe(2);
  });

  it('answers 504 when Kentik keeps resetting connections', async () => {
    const q = fresh();
    sim.script(Array.from({ length: RETRIES + 1 }, () => ({ kind: 'reset' as const })));
    const r = await getImage(svc.url, await requestImage(svc.url, q));
    expect(r.status).toBe(504);
    expect(r.json.type).toBe('Kentik API unavailable');
  });

  it.each([
    ['malformed-json', 'not valid JSON'],
    ['malformed-data-uri', 'dataUri'],
  ] as const)('answers 502 for a %s answer, without retrying', async (kind, msg) => {
    const q = fresh();
    sim.script([{ kind }]);
    const r = await getImage(svc.url, await requestImage(svc.url, q));
    expect(r.status).toBe(502);
    expect(r.json).toMatchObject({
      type: 'Kentik API bad response',
      msg: expect.stringContaining(msg),
    });
    expect(calls(q)).toBe(1);
  });

  it('stores wrong credentials as 401/403 from Kentik, without echoing the token', async () => {
    const bad = await startService({
      KENTIK_API_URL: sim.url,
      KT_AUTH_TOKEN: 'wrong-token-DO-NOT-LEAK',
      KENTIK_API_RETRIES: '0',
    });
    try {
      const r = await getImage(bad.url, await requestImage(bad.url, fresh()));
      expect(r.status).toBe(403);
      expect(r.json.type).toBe('Kentik API error');
      expect(r.bytes.toString()).not.toContain('wrong-token');
    } finally {
      await bad.stop();
      expectNoSecret(bad.output, 'wrong-token-DO-NOT-LEAK');
    }
  });

  it('sends the credentials and the query unchanged', async () => {
    const q = { ...fresh(), extra_field_kentik_ignores: { nested: [1, 'two', null] } };
    const r = await getImage(svc.url, await requestImage(svc.url, q));
    expect(r.status).toBe(200); // the simulator checks both headers
    expect(calls(q)).toBe(1); // and it hashed exactly our query
  });
});

describe('waiting for a pending image', () => {
  it('answers 504 with Retry-After when still pending after ENTRY_WAIT_TIMEOUT, then serves it', async () => {
    const slow = await startService({
      KENTIK_API_URL: sim.url,
      ENTRY_WAIT_TIMEOUT: '0.3',
      KENTIK_API_RETRIES: '0',
    });
    try {
      sim.setFaults({ latencyMs: 1500 });
      const id = await requestImage(slow.url, fresh());
      const r = await getImage(slow.url, id);
      expect(r.status).toBe(504);
      expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(r.json).toMatchObject({
        type: 'Image pending',
        msg: expect.stringContaining('Retry'),
      });
      // Event-driven: a later GET returns as soon as the fetch lands, not on a polling tick.
      let final = await getImage(slow.url, id);
      while (final.status === 504) final = await getImage(slow.url, id);
      expect(final.status).toBe(200);
    } finally {
      await slow.stop();
    }
  });

  it('a client that disconnects while waiting leaves no waiter behind', async () => {
    const patient = await startService({
      KENTIK_API_URL: sim.url,
      KENTIK_API_RETRIES: '0',
      KENTIK_API_TIMEOUT: '30',
    });
    try {
      sim.setFaults({ latencyMs: 2000 });
      const id = await requestImage(patient.url, fresh());
      const aborted = await Promise.allSettled(
        Array.from({ length: 20 }, () =>
          fetch(`${patient.url}/image/${id}`, { signal: AbortSignal.timeout(100) }),
        ),
      );
      expect(aborted.every((r) => r.status === 'rejected')).toBe(true);
      // The server sees the sockets close shortly after; watch for that through /metrics.
      let waiters = await metric(patient.url, 'kic_waiters');
      while (waiters > 0) waiters = await metric(patient.url, 'kic_waiters');
      // Gone because the clients left, not because the fetch finished:
      const info = await getJson(`${patient.url}/info`);
      expect(info.pending_entries.map((e: { id: string }) => e.id)).toContain(id);
      expect((await getImage(patient.url, id)).status).toBe(200);
    } finally {
      await patient.stop();
    }
  });
});

describe('KENTIK_API_CONCURRENCY', () => {
  it('never runs more upstream calls at once than allowed', async () => {
    const limited = await startService({
      KENTIK_API_URL: sim.url,
      KENTIK_API_CONCURRENCY: '2',
      KENTIK_API_RETRIES: '0',
    });
    try {
      sim.setFaults({ latencyMs: 300 });
      const ids = await Promise.all(
        Array.from({ length: 6 }, () => requestImage(limited.url, fresh())),
      );
      const results = await Promise.all(ids.map((id) => getImage(limited.url, id)));
      expect(results.every((r) => r.status === 200)).toBe(true);
      expect(sim.stats().maxConcurrent).toBe(2);
    } finally {
      await limited.stop();
    }
  });
});
