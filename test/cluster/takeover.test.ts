/**
 * Issue 8, behaviour 4 and 11: flights have a lease (FLIGHT_LEASE, 2 s here). A replica killed
 * mid-fetch is taken over once the lease runs out; one paused past its lease has its late result
 * rejected; one stopped with SIGTERM hands its flights over at once.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from '../../src/domain/hash.ts';
import { getImage, kentikQuery, metric, requestImage, until } from '../support/index.ts';
import {
  sha256,
  startCluster,
  sumMetric,
  upstreamCalls,
  upstreamDigests,
  type Cluster,
} from './harness.ts';

let c: Cluster;

beforeAll(async () => {
  c = await startCluster({ replicas: 3, env: { FLIGHT_LEASE: '2' } });
});
afterAll(async () => {
  await c?.stop();
});
beforeEach(async () => {
  await c.sim.reset();
});

/** Resolves once the simulator has `n` chart calls open (the holder is mid-fetch). */
const inFlight = (n = 1): Promise<true> =>
  until(`${n} upstream call(s) in flight`, async () =>
    (await c.sim.stats()).inFlight >= n ? true : undefined,
  );

describe('flight leases', () => {
  it('kill -9 of the flight holder mid-fetch: another replica completes every id, the dead one’s own included', async () => {
    const q = kentikQuery('takeover kill');
    const hash = queryHash(q);
    // The holder's call never answers; the taker's call (the next one) does.
    await c.sim.script([{ kind: 'hang' }]);
    const [a, b, cc] = c.replicas;
    const idA = await requestImage(a!.url, q, 300); // A holds the flight
    const idB = await requestImage(b!.url, q, 400); // shares it (rule 2)
    const idC = await requestImage(cc!.url, q, 500);
    await inFlight();
    const takersBefore = await sumMetric([b!, cc!], 'kic_flight_takeovers_total');
    const killedAt = performance.now();
    await a!.stop('SIGKILL');
    const served = await Promise.all([
      getImage(b!.url, idA),
      getImage(cc!.url, idA),
      getImage(b!.url, idB),
      getImage(cc!.url, idC),
    ]);
    const takeoverMs = performance.now() - killedAt;
    console.info(
      `takeover after kill -9: last id served ${Math.round(takeoverMs)} ms after the kill (lease 2 s)`,
    );
    expect(served.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    const digests = await upstreamDigests(c.sim, hash);
    expect(digests).toHaveLength(1); // the hung call gave no image; the taker's did
    for (const r of served) expect(sha256(r.bytes)).toBe(digests[0]);
    expect(await upstreamCalls(c.sim, hash)).toBe(2);
    expect(await sumMetric([b!, cc!], 'kic_flight_takeovers_total')).toBeGreaterThan(takersBefore);
    await c.replace(0);
  });

  it('SIGSTOP of the holder past its lease: one correct image, its late result rejected after SIGCONT', async () => {
    const q = kentikQuery('takeover sigstop');
    const hash = queryHash(q);
    await c.sim.setLatency(1500);
    const [a, b, cc] = c.replicas;
    const id = await requestImage(a!.url, q, 300);
    await inFlight();
    const rejectedBefore = await metric(a!.url, 'kic_settle_total', { outcome: 'rejected' });
    const takersBefore = await sumMetric([b!, cc!], 'kic_flight_takeovers_total');
    a!.signal('SIGSTOP');
    try {
      // The lease runs out while A sleeps; B or C takes the flight over and settles it.
      const fromB = await getImage(b!.url, id);
      expect(fromB.status).toBe(200);
      expect(await sumMetric([b!, cc!], 'kic_flight_takeovers_total')).toBeGreaterThan(
        takersBefore,
      );
      // A's own call has been answered by now (1.5 s), and waits unread in its socket.
      await until('both upstream calls to be answered', async () =>
        (await upstreamDigests(c.sim, hash)).length >= 2 ? true : undefined,
      );
    } finally {
      a!.signal('SIGCONT');
    }
    await until('A to try to settle its late result and be refused', async () =>
      (await metric(a!.url, 'kic_settle_total', { outcome: 'rejected' })) > rejectedBefore
        ? true
        : undefined,
    );
    const all = await Promise.all(c.replicas.map((r) => getImage(r.url, id)));
    expect(all.map((r) => r.status)).toEqual([200, 200, 200]);
    const taken = (await getImage(b!.url, id)).bytes;
    for (const r of all) expect(sha256(r.bytes)).toBe(sha256(taken));
    expect(await upstreamCalls(c.sim, hash)).toBe(2);
  });
});

describe('SIGTERM', () => {
  let slow: Cluster;
  beforeAll(async () => {
    // A long lease, so that "at once" cannot be the lease running out; its own key prefix.
    slow = await startCluster({
      replicas: 2,
      shared: { redis: c.redis, sim: c.sim },
      env: { FLIGHT_LEASE: '30', REDIS_KEY_PREFIX: 'kic-term:' },
    });
  });
  afterAll(async () => {
    await slow?.stop();
  });

  it('a stopping replica hands its flights over at once instead of making the others wait out the lease', async () => {
    const q = kentikQuery('takeover sigterm');
    const hash = queryHash(q);
    await c.sim.script([{ kind: 'hang' }]);
    const [a, b] = slow.replicas;
    const id = await requestImage(a!.url, q, 300);
    await inFlight();
    const t0 = performance.now();
    const exited = a!.stop('SIGTERM');
    const res = await getImage(b!.url, id);
    const ms = performance.now() - t0;
    console.info(
      `handover on SIGTERM: image served by the other replica ${Math.round(ms)} ms after SIGTERM (lease 30 s)`,
    );
    expect(res.status).toBe(200);
    const digests = await upstreamDigests(c.sim, hash);
    expect(sha256(res.bytes)).toBe(digests[0]);
    expect(await upstreamCalls(c.sim, hash)).toBe(2);
    // "At once": far from the 30 s lease (generous for a loaded CI machine).
    expect(ms).toBeLessThan(10_000);
    expect(await exited).toBe(0);
  });
});
