/**
 * Admission limits (issue 9): a POST flood meets the per-client rate limit and MAX_PENDING while an
 * authorised client still gets its chart; oversized queries are refused; re-POSTs with a growing
 * ttl reuse ids; a queued fetch whose ids all expired never reaches Kentik.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { queryHash } from '../src/domain/hash.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { readStoredEntries } from '../src/store/fs-store.ts';
import {
  getImage,
  kentikQuery,
  metricFromText,
  postJson,
  requestImage,
  startService,
  until,
  type Service,
} from './helpers/service.ts';

const LEGIT = 'legit-dashboard-0123456789abcdef';
const FLOODER = 'flooder-0123456789abcdef-secret';

let sim: Simulator;
const services: Service[] = [];
beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
});
afterEach(() => sim.reset());
afterAll(async () => {
  for (const s of services) await s.stop();
  await sim.close();
});
const start = async (env: Record<string, string>): Promise<Service> => {
  const s = await startService({ KENTIK_API_URL: sim.url, ...env });
  services.push(s);
  return s;
};
const calls = (q: unknown): number => sim.stats().byHash[queryHash(q)]?.calls ?? 0;

describe('POST flood', () => {
  it('is cut by the per-client rate limit (429 + Retry-After) while another client still gets its chart', async () => {
    const svc = await start({
      API_KEYS: `legit:${LEGIT},flooder:${FLOODER}`,
      RATE_LIMIT_MAX: '20',
      RATE_LIMIT_WINDOW: '60',
    });
    const auth = (key: string) => ({ authorization: `Bearer ${key}` });
    const answers = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        postJson(`${svc.url}/requests`, { api_query: kentikQuery(`flood-${i}`) }, auth(FLOODER)),
      ),
    );
    const byStatus = answers.reduce<Record<number, number>>(
      (acc, r) => ({ ...acc, [r.status]: (acc[r.status] ?? 0) + 1 }),
      {},
    );
    expect(byStatus).toEqual({ 200: 20, 429: 40 });
    const refused = answers.find((r) => r.status === 429)!;
    expect(refused.json).toMatchObject({ type: 'Too many requests', loc: ['request'] });
    expect(refused.json.msg).toContain('RATE_LIMIT_MAX');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // Only the accepted POSTs cost Kentik anything.
    expect(sim.stats().total).toBeLessThanOrEqual(20);

    const q = kentikQuery('legit-after-flood');
    const mine = await postJson(`${svc.url}/requests`, { api_query: q }, auth(LEGIT));
    expect(mine.status).toBe(200);
    expect((await getImage(svc.url, mine.json.id)).status).toBe(200);
  });

  it('without keys, limits by client address', async () => {
    const svc = await start({ RATE_LIMIT_MAX: '5' });
    const statuses = [];
    for (let i = 0; i < 8; i++)
      statuses.push(
        (await postJson(`${svc.url}/requests`, { api_query: kentikQuery(`addr-${i}`) })).status,
      );
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    // X-Forwarded-For is not believed without TRUST_PROXY: a forged one does not reset the count.
    const forged = await postJson(
      `${svc.url}/requests`,
      { api_query: kentikQuery('addr-forged') },
      { 'x-forwarded-for': '203.0.113.7' },
    );
    expect(forged.status).toBe(429);
  });

  it('with TRUST_PROXY, limits by the X-Forwarded-For address', async () => {
    const svc = await start({ RATE_LIMIT_MAX: '2', TRUST_PROXY: 'true' });
    const from = (ip: string, n: string) =>
      postJson(
        `${svc.url}/requests`,
        { api_query: kentikQuery(`xff-${n}`) },
        { 'x-forwarded-for': ip },
      );
    expect((await from('203.0.113.1', '1')).status).toBe(200);
    expect((await from('203.0.113.1', '2')).status).toBe(200);
    expect((await from('203.0.113.1', '3')).status).toBe(429);
    expect((await from('203.0.113.2', '4')).status).toBe(200);
  });

  it('MAX_PENDING refuses new misses with 503 + Retry-After; hits and shared ids still succeed', async () => {
    sim.setFaults({ latencyMs: 60_000 }); // nothing finishes during the test
    const svc = await start({ MAX_PENDING: '5', KENTIK_API_CONCURRENCY: '1' });
    const queries = Array.from({ length: 5 }, (_, i) => kentikQuery(`pending-${i}`));
    const ids = [];
    for (const q of queries) ids.push(await requestImage(svc.url, q, 60));
    const refused = await postJson(`${svc.url}/requests`, {
      api_query: kentikQuery('pending-6'),
    });
    expect(refused.status).toBe(503);
    expect(refused.json).toMatchObject({ type: 'Too busy', loc: ['upstream'] });
    expect(refused.json.msg).toContain('MAX_PENDING');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(5);
    // A hit (same query, shorter ttl) and a shared id (longer ttl joins the fetch) still work.
    expect(await requestImage(svc.url, queries[0], 30)).toBe(ids[0]);
    const shared = await requestImage(svc.url, queries[1], 120);
    expect(shared).not.toBe(ids[1]);
    expect(calls(kentikQuery('pending-6'))).toBe(0);
  });
});

describe('query size and ids per query', () => {
  it('refuses a query over MAX_QUERY_BYTES (64 KiB) with 413, and takes one just under it', async () => {
    const svc = await start({});
    const big = await postJson(`${svc.url}/requests`, {
      api_query: { ...kentikQuery('big'), pad: 'x'.repeat(64 * 1024) },
    });
    expect(big.status).toBe(413);
    expect(big.json.msg).toContain('65536 bytes (MAX_QUERY_BYTES)');
    const ok = await postJson(`${svc.url}/requests`, {
      api_query: { ...kentikQuery('big'), pad: 'x'.repeat(60 * 1024) },
    });
    expect(ok.status).toBe(200);
  });

  it('re-POSTing one query with a growing ttl reuses ids instead of one new entry each time', async () => {
    const svc = await start({ MAX_TTL: String(30 * 24 * 3600) });
    const q = kentikQuery('growing-ttl');
    const ids = new Set<string>();
    const maxTtl = 30 * 24 * 3600;
    // The attack: the longest ttl, POSTed again and again (each one a little later, so a little
    // longer-lived than the last).
    for (let i = 0; i < 300; i++) ids.add(await requestImage(svc.url, q, maxTtl));
    expect(ids.size).toBeLessThanOrEqual(2);
    const stored = [...(await readStoredEntries(svc.cachePath)).keys()].filter((id) =>
      id.startsWith(queryHash(q)),
    );
    expect(stored.length).toBeLessThanOrEqual(2);
    expect(calls(q)).toBe(1);
  });

  it('refuses MAX_TTL above 30 days at start', async () => {
    const bad = await startService(
      { KENTIK_API_URL: sim.url, MAX_TTL: String(31 * 24 * 3600) },
      { expectFail: true },
    );
    services.push(bad);
    expect(await bad.exited).toBe(2);
    expect(bad.output.join('\n')).toMatch(/MAX_TTL=.*from 1 to 2592000/);
  });
});

describe('expired queued fetches', () => {
  it('are dropped from the queue, not sent to Kentik', async () => {
    // One upstream slot, held by a hanging call for 3 s; behind it a fetch whose only id lives 1 s.
    const svc = await start({
      KENTIK_API_CONCURRENCY: '1',
      KENTIK_API_TIMEOUT: '3',
      KENTIK_API_RETRIES: '0',
    });
    sim.script([{ kind: 'hang' }]);
    const blocker = kentikQuery('blocker');
    await requestImage(svc.url, blocker, 60);
    const shortLived = kentikQuery('short-lived');
    await requestImage(svc.url, shortLived, 1);
    await svc.waitForLog((l) => l.msg.startsWith('queued fetch dropped'), 15_000);
    expect(calls(blocker)).toBe(1);
    expect(calls(shortLived)).toBe(0);
  });
});

describe('the upstream queue', () => {
  it('runs KENTIK_API_CONCURRENCY fetches at a time, reports the rest as kic_upstream_queued and runs each once', async () => {
    // A simulator of its own: calls other tests left hanging must not count as this service's.
    const slow = await startSimulator({
      email: 'test@example.com',
      token: 'test-token-DO-NOT-LEAK',
      faults: { latencyMs: 1500 },
    });
    try {
      const svc = await start({ KENTIK_API_URL: slow.url, KENTIK_API_CONCURRENCY: '2' });
      const queries = Array.from({ length: 7 }, (_, i) => kentikQuery(`queue-${i}`));
      const ids = [];
      for (const q of queries) ids.push(await requestImage(svc.url, q, 600));
      await until('two calls at Kentik', async () =>
        slow.stats().inFlight === 2 ? true : undefined,
      );
      const queued = async (): Promise<number> =>
        metricFromText(await (await fetch(`${svc.url}/metrics`)).text(), 'kic_upstream_queued');
      expect(await queued()).toBe(5);
      const images = await Promise.all(ids.map((id) => getImage(svc.url, id)));
      expect(images.map((r) => r.status)).toEqual(ids.map(() => 200));
      expect(slow.stats().maxConcurrent).toBe(2);
      for (const q of queries) expect(slow.stats().byHash[queryHash(q)]?.calls).toBe(1);
      expect(await queued()).toBe(0);
    } finally {
      await slow.close();
    }
  }, 30_000);
});
