import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from '../src/domain/hash.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { startRedis, stopAllRedis, type RedisServer } from './helpers/redis-server.ts';
import {
  expectNoSecret,
  getImage,
  getJson,
  kentikQuery,
  metric,
  postJson,
  requestImage,
  startService,
  type Service,
} from './helpers/service.ts';

/*
 * One or two service processes in CACHE_BACKEND=redis mode on a real redis-server: the
 * behaviour of a replica on its own (memory copies, Redis going away and coming back empty,
 * handing flights over at SIGTERM, the password). The multi-replica cluster tests live elsewhere.
 */

const PASSWORD = 'redis-pass-DO-NOT-LEAK';
let sim: Simulator;
let redis: RedisServer;
const services: Service[] = [];
const calls = (q: unknown): number => sim.stats().byHash[queryHash(q)]?.calls ?? 0;

async function replica(env: Record<string, string> = {}): Promise<Service> {
  const svc = await startService({
    CACHE_BACKEND: 'redis',
    CACHE_PATH: '',
    REDIS_URL: redis.url,
    KENTIK_API_URL: sim.url,
    KENTIK_API_RETRIES: '0',
    ...env,
  });
  services.push(svc);
  return svc;
}

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  redis = await startRedis({ password: PASSWORD });
});
afterAll(async () => {
  for (const s of services) await s.stop('SIGKILL');
  for (const s of services) {
    expectNoSecret(s.output);
    expectNoSecret(s.output, PASSWORD);
  }
  await stopAllRedis();
  await sim.close();
});
beforeEach(() => sim.reset());

describe('one replica on Redis', () => {
  let svc: Service;
  beforeAll(async () => {
    svc = await replica({ DEBUG: '1' });
  });

  it('prints its effective settings with the Redis URL redacted', async () => {
    const line = await svc.waitForLog((l) => l.msg === 'effective settings');
    expect((line.settings as Record<string, unknown>).redisUrl).toBe('[REDACTED]');
    expect(JSON.stringify(line)).not.toContain(PASSWORD);
  });

  it('requests, shares and serves images through Redis; hot GETs come from memory', async () => {
    sim.setFaults({ latencyMs: 200 });
    const q = kentikQuery('redis-basic');
    const ids = await Promise.all(
      Array.from({ length: 20 }, (_, i) => requestImage(svc.url, q, 300 + i)),
    );
    const images = await Promise.all(ids.map((id) => getImage(svc.url, id)));
    for (const img of images) {
      expect(img.status).toBe(200);
      expect(img.bytes.equals(images[0]!.bytes)).toBe(true);
    }
    expect(calls(q)).toBe(1);
    const info = await getJson(`${svc.url}/info?limit=1000`);
    // Some POSTs may be hits (an id already made with a longer ttl): count distinct ids.
    expect(info.active_count).toBeGreaterThanOrEqual(new Set(ids).size);
    expect(info.active_entries.map((e: { id: string }) => e.id)).toEqual(
      expect.arrayContaining(ids),
    );
    expect(info.stored_bytes).toBeGreaterThanOrEqual(images[0]!.bytes.length);

    const hits = await metric(svc.url, 'kic_memory_hits_total');
    expect((await getImage(svc.url, ids[0]!)).status).toBe(200);
    expect(await metric(svc.url, 'kic_memory_hits_total')).toBe(hits + 1);
    expect(await metric(svc.url, 'kic_settle_total', { outcome: 'accepted' })).toBeGreaterThan(0);
  });

  it('/info pages with next_cursor through every entry, newest first', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await requestImage(svc.url, kentikQuery(`page-${i}`)));
    const seen: string[] = [];
    let url = `${svc.url}/info?limit=3`;
    for (let n = 0; n < 50; n++) {
      const info = await getJson(url);
      seen.push(...[...info.active_entries, ...info.pending_entries].map((e: any) => e.id));
      if (!info.next_cursor) break;
      expect(info.truncated).toBe(true);
      url = `${svc.url}/info?limit=3&cursor=${encodeURIComponent(info.next_cursor)}`;
    }
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expect.arrayContaining(ids));
  });

  it('Redis down: /healthz 200, /readyz and Redis-bound requests 503 fast, memory-held images served; back empty: old ids 404', async () => {
    const q = kentikQuery('redis-down');
    const held = await requestImage(svc.url, q);
    const heldImage = await getImage(svc.url, held);
    expect(heldImage.status).toBe(200);

    await redis.stop('SIGKILL');
    let t0 = performance.now();
    for (;;) {
      const r = await fetch(`${svc.url}/readyz`);
      if (r.status === 503) break;
      expect(performance.now() - t0).toBeLessThan(2000);
    }
    expect((await fetch(`${svc.url}/healthz`)).status).toBe(200);

    t0 = performance.now();
    const post = await postJson(`${svc.url}/requests`, { api_query: kentikQuery('while-down') });
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(post.status).toBe(503);
    expect(post.json).toMatchObject({ type: 'Service unavailable', loc: expect.any(Array) });
    expect(Number(post.headers.get('retry-after'))).toBeGreaterThan(0);

    t0 = performance.now();
    const unknown = await getImage(
      svc.url,
      `${'b'.repeat(64)}_${Math.floor(Date.now() / 1000) + 60}`,
    );
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(unknown.status).toBe(503);
    expect(unknown.headers.get('retry-after')).toBeTruthy();

    const fromMemory = await getImage(svc.url, held);
    expect(fromMemory.status).toBe(200);
    expect(fromMemory.bytes.equals(heldImage.bytes)).toBe(true);

    // Back, but empty (no persistence): the replica notices and forgets its copies.
    await redis.restart();
    await expect
      .poll(async () => (await fetch(`${svc.url}/readyz`)).status, { timeout: 10_000 })
      .toBe(200);
    await svc.waitForLog((l) => /lost its data/.test(l.msg), 10_000);
    expect((await getImage(svc.url, held)).status).toBe(404);
    expect(await metric(svc.url, 'kic_redis_reconnects_total')).toBeGreaterThanOrEqual(1);
    // And it works again.
    const again = await requestImage(svc.url, q);
    expect((await getImage(svc.url, again)).status).toBe(200);
  });
});

describe('two replicas', () => {
  it('SIGTERM hands a flight over at once: the other replica fetches and its waiter is served long before the lease', async () => {
    const env = { FLIGHT_LEASE: '60', REDIS_KEY_PREFIX: 'handover:' };
    const a = await replica(env);
    const b = await replica(env);
    sim.setFaults({ latencyMs: 3000 });
    const q = kentikQuery('handover');
    const id = await requestImage(a.url, q);
    // A's call to Kentik is under way.
    await expect.poll(() => calls(q), { interval: 20 }).toBe(1);
    const waiting = getImage(b.url, id);
    const t0 = performance.now();
    expect(await a.stop('SIGTERM')).toBe(0);
    const img = await waiting;
    expect(img.status).toBe(200);
    expect(img.headers.get('content-type')).toBe('image/png');
    // Handed over, not waited out: FLIGHT_LEASE is 60 s, the second call takes 3 s.
    expect(performance.now() - t0).toBeLessThan(20_000);
    expect(calls(q)).toBe(2);
    await b.waitForLog((l) => l.msg === 'taking over orphaned fetches' && l.count === 1);
    expect(await metric(b.url, 'kic_flight_takeovers_total')).toBe(1);
  });

  it('MAX_PENDING counts the flights of every replica: a new miss on the other replica is refused, a share or hit is not', async () => {
    sim.setFaults({ latencyMs: 60_000 }); // nothing finishes during the test
    const env = { MAX_PENDING: '3', KENTIK_API_CONCURRENCY: '1', REDIS_KEY_PREFIX: 'cap:' };
    const a = await replica(env);
    const b = await replica(env);
    const queries = [0, 1, 2].map((i) => kentikQuery(`cluster-pending-${i}`));
    const ids: string[] = [];
    for (const q of queries) ids.push(await requestImage(a.url, q, 60));
    const extra = kentikQuery('cluster-pending-3');
    const refused = await postJson(`${b.url}/requests`, { api_query: extra });
    expect(refused.status).toBe(503);
    expect(refused.json).toMatchObject({ type: 'Too busy', loc: ['upstream'] });
    expect(refused.json.msg).toContain('3 fetches are already waiting');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(5);
    // Joining A's flight (longer ttl) and a hit on A's id (shorter ttl) are no new work.
    const shared = await requestImage(b.url, queries[0]!, 120);
    expect(shared).not.toBe(ids[0]);
    expect(await requestImage(b.url, queries[1]!, 30)).toBe(ids[1]);
    expect(calls(extra)).toBe(0);
  });
});
