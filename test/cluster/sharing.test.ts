/**
 * Issue 8, behaviour 1–3: three replicas on one Redis share one cache. Real processes: three
 * services in Redis mode, the simulator, a redis-server with a password.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from '../../src/domain/hash.ts';
import { getImage, kentikQuery, metric, postJson, requestImage, until } from '../support/index.ts';
import { sha256, startCluster, upstreamCalls, upstreamDigests, type Cluster } from './harness.ts';

let c: Cluster;

beforeAll(async () => {
  c = await startCluster({ replicas: 3 });
});
afterAll(async () => {
  await c?.stop();
});
beforeEach(async () => {
  await c.sim.reset();
});

describe('three replicas on one Redis', () => {
  it('300 concurrent identical requests spread over three replicas: one upstream call, 300 correct images', async () => {
    await c.sim.setLatency(500);
    const q = kentikQuery('cluster fan-in');
    const n = 300;
    const ids = await Promise.all(
      Array.from({ length: n }, (_, i) => requestImage(c.replicas[i % 3]!.url, q, 300 + (i % 5))),
    );
    // Each id is fetched from another replica than the one that issued it.
    const t0 = performance.now();
    const images = await Promise.all(
      ids.map((id, i) => getImage(c.replicas[(i + 1) % 3]!.url, id)),
    );
    // Woken when the fetch settled, not answered by the last look at ENTRY_WAIT_TIMEOUT (30 s).
    expect(performance.now() - t0).toBeLessThan(10_000);
    const statuses = images.map((r) => r.status);
    expect(
      statuses.filter((s) => s !== 200),
      `statuses: ${[...new Set(statuses)]}`,
    ).toEqual([]);
    expect(await upstreamCalls(c.sim, queryHash(q))).toBe(1);
    const [digest] = await upstreamDigests(c.sim, queryHash(q));
    expect(new Set(images.map((r) => sha256(r.bytes)))).toEqual(new Set([digest]));
  });

  it('an id issued by one replica is served by every replica, pending or done', async () => {
    await c.sim.setLatency(300);
    const q = kentikQuery('cluster any replica');
    const [a, b, cc] = c.replicas;
    const id = await requestImage(a!.url, q, 600);
    // While the fetch runs on A, B and C wait for it too, and are woken when it settles.
    const t0 = performance.now();
    const first = await Promise.all([getImage(b!.url, id), getImage(cc!.url, id)]);
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(first.map((r) => r.status)).toEqual([200, 200]);
    const later = await Promise.all(c.replicas.map((r) => getImage(r.url, id)));
    expect(later.map((r) => r.status)).toEqual([200, 200, 200]);
    const [digest] = await upstreamDigests(c.sim, queryHash(q));
    for (const r of [...first, ...later]) expect(sha256(r.bytes)).toBe(digest);
    // The same query POSTed to another replica within its life is the same id (rule 1).
    expect(await requestImage(cc!.url, q, 300)).toBe(id);
    expect(await upstreamCalls(c.sim, queryHash(q))).toBe(1);
  });

  it('an unknown id is a 404 on every replica', async () => {
    const unknown = `${'ab'.repeat(32)}_${Math.floor(Date.now() / 1000) + 600}`;
    for (const r of c.replicas) {
      const res = await getImage(r.url, unknown);
      expect(res.status).toBe(404);
    }
  });

  it('keeps its keys under REDIS_KEY_PREFIX (default kic:)', async () => {
    await requestImage(c.replicas[0]!.url, kentikQuery('cluster prefix'), 60);
    const keys = (await c.redis.cli('--scan')).split('\n').filter(Boolean);
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.filter((k) => !k.startsWith('kic:'))).toEqual([]);
  });

  it('a GET waiting on one replica is woken by a fetch settled on another, even after its subscriber connection was killed', async () => {
    await c.sim.setLatency(1500);
    const q = kentikQuery('cluster pubsub killed');
    const [a, b] = c.replicas;
    const id = await requestImage(a!.url, q, 300);
    const waiting = getImage(b!.url, id);
    await until('the GET to wait on B', async () =>
      (await metric(b!.url, 'kic_waiters')) > 0 ? true : undefined,
    );
    // Every pub/sub connection of every replica is cut: the wake-up message is lost.
    const killed = Number(await c.redis.cli('CLIENT', 'KILL', 'TYPE', 'pubsub'));
    expect(killed).toBeGreaterThan(0);
    const t0 = performance.now();
    const res = await waiting;
    expect(res.status).toBe(200);
    // Woken, not answered by the last look at ENTRY_WAIT_TIMEOUT (30 s here).
    expect(performance.now() - t0).toBeLessThan(10_000);
    const [digest] = await upstreamDigests(c.sim, queryHash(q));
    expect(sha256(res.bytes)).toBe(digest);
    expect(await upstreamCalls(c.sim, queryHash(q))).toBe(1);

    // And every replica resubscribes on its own.
    await until('every replica to resubscribe', async () => {
      const subscribers = await c.redis.cli('CLIENT', 'LIST', 'TYPE', 'pubsub');
      return subscribers.split('\n').filter(Boolean).length >= c.replicas.length ? true : undefined;
    });
    await c.sim.setLatency(300);
    const id2 = await requestImage(a!.url, kentikQuery('cluster pubsub after'), 300);
    expect((await getImage(b!.url, id2)).status).toBe(200);
  });

  it('a waiter is woken even when no wake-up message can arrive at all (pub/sub refused)', async () => {
    // Reconnecting subscribers may be quick enough to catch the message of the test above; here
    // they cannot subscribe again until the end, so only the slow re-check can wake the GET.
    await c.sim.setLatency(1000);
    const q = kentikQuery('cluster pubsub refused');
    const [a, b] = c.replicas;
    const id = await requestImage(a!.url, q, 300);
    const waiting = getImage(b!.url, id);
    await until('the GET to wait on B', async () =>
      (await metric(b!.url, 'kic_waiters')) > 0 ? true : undefined,
    );
    await c.redis.cli('ACL', 'SETUSER', 'default', '-subscribe', '-psubscribe', '-ssubscribe');
    try {
      await c.redis.cli('CLIENT', 'KILL', 'TYPE', 'pubsub');
      const t0 = performance.now();
      const res = await waiting;
      expect(res.status).toBe(200);
      // Woken by the re-check, not answered by the last look at ENTRY_WAIT_TIMEOUT (30 s here).
      expect(performance.now() - t0).toBeLessThan(10_000);
      const [digest] = await upstreamDigests(c.sim, queryHash(q));
      expect(sha256(res.bytes)).toBe(digest);
      expect(await c.redis.cli('CLIENT', 'LIST', 'TYPE', 'pubsub')).toBe('');
    } finally {
      await c.redis.cli('ACL', 'SETUSER', 'default', '+subscribe', '+psubscribe', '+ssubscribe');
    }
    // Connections dropped once more (as after a network blip): every replica subscribes again.
    await c.redis.cli('CLIENT', 'KILL', 'TYPE', 'normal');
    await until('every replica to resubscribe', async () => {
      const subscribers = await c.redis.cli('CLIENT', 'LIST', 'TYPE', 'pubsub');
      return subscribers.split('\n').filter(Boolean).length >= c.replicas.length ? true : undefined;
    });
  });

  it('POST answers in Redis mode carry the same errors as in filesystem mode', async () => {
    const r = await postJson(`${c.replicas[1]!.url}/requests`, { api_query: 'nope' });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ type: expect.any(String), msg: expect.any(String) });
  });
});
