/**
 * Issue 8, behaviour 6: Kentik's limits apply to the cluster. KENTIK_API_CONCURRENCY counts calls
 * across all replicas, and a 429 with Retry-After seen by one replica holds back every replica.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from '../../src/domain/hash.ts';
import { getImage, kentikQuery, requestImage, until } from '../support/index.ts';
import { startCluster, type Cluster } from './harness.ts';

let c: Cluster;

beforeAll(async () => {
  c = await startCluster({ replicas: 3, env: { KENTIK_API_CONCURRENCY: '2' } });
});
afterAll(async () => {
  await c?.stop();
});
beforeEach(async () => {
  await c.sim.reset();
});

describe('Kentik limits across replicas', () => {
  it('KENTIK_API_CONCURRENCY=2 with three replicas: the simulator never sees more than 2 calls at once', async () => {
    await c.sim.setLatency(400);
    const queries = Array.from({ length: 12 }, (_, i) => kentikQuery(`limits concurrency ${i}`));
    // Four new queries on each replica at once: 12 fetches wanting to run.
    const ids = await Promise.all(
      queries.map((q, i) => requestImage(c.replicas[i % 3]!.url, q, 120)),
    );
    const images = await Promise.all(ids.map((id, i) => getImage(c.replicas[i % 3]!.url, id)));
    expect(images.map((r) => r.status)).toEqual(ids.map(() => 200));
    const stats = await c.sim.stats();
    for (const q of queries) expect(stats.byHash[queryHash(q)]?.calls).toBe(1);
    expect(stats.maxConcurrent).toBeLessThanOrEqual(2);
    expect(stats.maxConcurrent).toBeGreaterThan(0);
  });

  it('a 429 with Retry-After seen by one replica holds back the others until then', async () => {
    const retryAfterSec = 3;
    await c.sim.script([{ kind: 'status', status: 429, retryAfter: String(retryAfterSec) }]);
    const [a, b, cc] = c.replicas;
    const q1 = kentikQuery('limits 429 first');
    await requestImage(a!.url, q1, 120); // its fetch gets the 429 (no retries here)
    await until('the 429 to be answered', async () =>
      ((await c.sim.stats()).byStatus['429'] ?? 0) >= 1 ? true : undefined,
    );
    const q2 = kentikQuery('limits 429 second');
    const q3 = kentikQuery('limits 429 third');
    const ids = await Promise.all([requestImage(b!.url, q2, 120), requestImage(cc!.url, q3, 120)]);
    const images = await Promise.all([getImage(b!.url, ids[0]), getImage(cc!.url, ids[1])]);
    expect(images.map((r) => r.status)).toEqual([200, 200]);

    const { calls } = await c.sim.calls();
    const limited = calls.find((x) => x.status === 429);
    expect(limited, 'the 429 call').toBeDefined();
    const later = calls.filter((x) => x.hash === queryHash(q2) || x.hash === queryHash(q3));
    expect(later).toHaveLength(2);
    for (const call of later) {
      const waited = call.start - limited!.end;
      // Retry-After has whole-second resolution: a replica may count from when it read the header.
      expect(waited, `a call ${Math.round(waited)} ms after the 429`).toBeGreaterThanOrEqual(
        retryAfterSec * 1000 - 100,
      );
    }
  });
});
