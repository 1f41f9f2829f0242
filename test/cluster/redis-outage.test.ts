/**
 * Issue 8, behaviour 8 and 9: Redis goes away and comes back. Redis runs with AOF here, so a
 * restart keeps its data unless the test empties it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  getImage,
  kentikQuery,
  postJson,
  requestImage,
  until,
  type Service,
} from '../support/index.ts';
import { REDIS_PASSWORD, sha256, startCluster, upstreamCalls, type Cluster } from './harness.ts';

let c: Cluster;

beforeAll(async () => {
  c = await startCluster({ replicas: 3, redis: { aof: true } });
});
afterAll(async () => {
  await c?.stop();
});

/** Polls `path` on a replica until it answers `status`; resolves with the ms that took. */
async function msUntilStatus(svc: Service, path: string, status: number, timeoutMs: number) {
  const t0 = performance.now();
  await until(
    `${path} to answer ${status} on ${svc.url}`,
    async () => ((await fetch(`${svc.url}${path}`)).status === status ? true : undefined),
    timeoutMs,
    25,
  );
  return performance.now() - t0;
}

/** A request that needs Redis: answered 503 JSON with Retry-After, fast. */
async function expectFast503(what: string, send: () => Promise<Response>): Promise<number> {
  const t0 = performance.now();
  const res = await send();
  const ms = performance.now() - t0;
  const text = await res.text();
  expect(res.status, `${what}: ${text}`).toBe(503);
  expect(res.headers.get('retry-after'), what).toMatch(/^\d+$/);
  expect(res.headers.get('content-type'), what).toContain('application/json');
  expect(JSON.parse(text)).toMatchObject({ type: expect.any(String), msg: expect.any(String) });
  expect(ms, `${what} took ${Math.round(ms)} ms`).toBeLessThan(1000);
  return ms;
}

describe('Redis down and back', () => {
  let held: { id: string; bytes: Buffer };
  let onlyInRedis: string;

  it('Redis killed: /healthz 200, /readyz 503 within 2 s, fast 503s, images in memory still served', async () => {
    const [a, b, cc] = c.replicas;
    const id = await requestImage(a!.url, kentikQuery('outage held'), 3600);
    const img = await getImage(a!.url, id); // now in A's memory
    expect(img.status).toBe(200);
    held = { id, bytes: img.bytes };
    // Fetched on B only: after the outage C can only find it in Redis.
    onlyInRedis = await requestImage(b!.url, kentikQuery('outage redis only'), 3600);
    expect((await getImage(b!.url, onlyInRedis)).status).toBe(200);

    await c.redis.kill();
    const ready = await Promise.all(c.replicas.map((r) => msUntilStatus(r, '/readyz', 503, 5000)));
    console.info(
      `Redis killed: /readyz 503 after ${ready.map((m) => Math.round(m)).join(' / ')} ms`,
    );
    for (const ms of ready) expect(ms).toBeLessThan(2000);
    for (const r of c.replicas) expect((await fetch(`${r.url}/healthz`)).status).toBe(200);

    const post = await expectFast503('POST of a new query', () =>
      fetch(`${cc!.url}/requests`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ api_query: kentikQuery('outage new'), ttl: 60 }),
      }),
    );
    const get = await expectFast503('GET of an id this replica does not hold', () =>
      fetch(`${cc!.url}/image/${onlyInRedis}`),
    );
    console.info(
      `Redis down: POST 503 in ${Math.round(post)} ms, GET 503 in ${Math.round(get)} ms`,
    );
    const fromMemory = await getImage(a!.url, held.id);
    expect(fromMemory.status).toBe(200);
    expect(sha256(fromMemory.bytes)).toBe(sha256(held.bytes));
  });

  it('Redis back (AOF): every replica recovers on its own, and ids survive', async () => {
    await c.redis.restart();
    const ready = await Promise.all(
      c.replicas.map((r) => msUntilStatus(r, '/readyz', 200, 15_000)),
    );
    console.info(`Redis back: /readyz 200 after ${ready.map((m) => Math.round(m)).join(' / ')} ms`);
    const [a, , cc] = c.replicas;
    const fromRedis = await getImage(cc!.url, onlyInRedis);
    expect(fromRedis.status).toBe(200);
    // New work flows again, across replicas (pub/sub resubscribed or fallback re-check).
    const id = await requestImage(a!.url, kentikQuery('outage after'), 60);
    expect((await getImage(cc!.url, id)).status).toBe(200);
  });

  it('Redis restarted empty: old ids are a 404 on every replica, the one holding it in memory too', async () => {
    await c.redis.restart({ empty: true });
    for (const r of c.replicas) await msUntilStatus(r, '/readyz', 200, 15_000);
    for (const r of c.replicas) {
      await until(
        `${r.url} to answer 404 for an id Redis forgot`,
        async () => ((await getImage(r.url, held.id)).status === 404 ? true : undefined),
        15_000,
        100,
      );
      expect((await getImage(r.url, onlyInRedis)).status).toBe(404);
    }
    // The same query is fetched anew: one more Kentik call, and its id serves the image. The id
    // may be the forgotten one again (expiries are rounded to 1/64 of the ttl, see roundExpiry):
    // it names the same query and expiry, so whoever still holds it gets this query's image.
    const hash = held.id.slice(0, 64);
    const callsBefore = await upstreamCalls(c.sim, hash);
    const again = await requestImage(c.replicas[1]!.url, kentikQuery('outage held'), 3600);
    expect(again.slice(0, 64)).toBe(hash);
    const served = await getImage(c.replicas[2]!.url, again);
    expect(served.status).toBe(200);
    expect(await upstreamCalls(c.sim, hash)).toBe(callsBefore + 1);
  });

  it('the REDIS_URL password appears in no log line and no answer, Redis up or down', async () => {
    const [a] = c.replicas;
    const settings = await c.startReplica({ DEBUG: '1' });
    await settings.waitForLog((l) => l.msg === 'effective settings');
    await c.redis.kill();
    await msUntilStatus(a!, '/readyz', 503, 5000);
    const answers = await Promise.all([
      fetch(`${a!.url}/readyz`).then((r) => r.text()),
      fetch(`${a!.url}/info`).then((r) => r.text()),
      fetch(`${a!.url}/metrics`).then((r) => r.text()),
      postJson(`${a!.url}/requests`, { api_query: kentikQuery('leak') }).then((r) =>
        JSON.stringify(r.json),
      ),
    ]);
    await c.redis.restart();
    await msUntilStatus(a!, '/readyz', 200, 15_000);
    for (const text of answers) expect(text).not.toContain(REDIS_PASSWORD);
    for (const r of [...c.replicas, settings]) {
      expect(r.secrets).toContain(REDIS_PASSWORD);
      expect(r.output.filter((l) => l.includes(REDIS_PASSWORD))).toEqual([]);
    }
    // (test/helpers/no-secret.setup.ts checks the same for every service of every test file.)
  });

  it('Redis full (maxmemory, noeviction): new images are refused (507; 503 for a POST that does not fit), stored ones are still served', async () => {
    const [a, b] = c.replicas;
    const id = await requestImage(a!.url, kentikQuery('full stored'), 600);
    const stored = await getImage(a!.url, id);
    expect(stored.status).toBe(200);
    const used = Number((await c.redis.info('memory')).used_memory);
    // Room for a few entries and at most one more image of ~90 KB: new images soon do not fit.
    await c.redis.cli('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
    await c.redis.cli('CONFIG', 'SET', 'maxmemory', String(used + 150_000));
    try {
      let refused: { status: number; json: any; retryAfter: string | null } | undefined;
      for (let i = 0; i < 8 && !refused; i++) {
        const r = await postJson(`${b!.url}/requests`, {
          api_query: kentikQuery(`full refused ${i}`),
          ttl: 600,
        });
        if (r.status !== 200) {
          refused = { status: r.status, json: r.json, retryAfter: r.headers.get('retry-after') };
          break;
        }
        const img = await getImage(b!.url, r.json.id);
        if (img.status !== 200)
          refused = {
            status: img.status,
            json: img.json,
            retryAfter: img.headers.get('retry-after'),
          };
      }
      // A POST refused (503, retry later) or, once the entry was stored, its image refused (507).
      expect(refused, 'Redis never filled up').toBeDefined();
      expect([503, 507], JSON.stringify(refused)).toContain(refused!.status);
      expect(refused!.json).toMatchObject({ type: expect.any(String), msg: expect.any(String) });
      if (refused!.status === 503) expect(refused!.retryAfter).toMatch(/^\d+$/);
      for (const replica of [a!, b!]) {
        const again = await getImage(replica.url, id);
        expect(again.status).toBe(200);
        expect(sha256(again.bytes)).toBe(sha256(stored.bytes));
      }
    } finally {
      await c.redis.cli('CONFIG', 'SET', 'maxmemory', '0');
    }
  });
});
