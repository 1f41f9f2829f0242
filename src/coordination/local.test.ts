import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../metrics.ts';
import { FsStore } from '../store/fs-store.ts';
import {
  CONCURRENCY,
  coordinatorContract,
  LEASE_SECONDS,
  REUSE_WINDOW_SECONDS,
  silentLog,
  withJson,
} from './coordinator.contract.ts';
import { LocalCoordinator } from './local.ts';

let dir: string;
const freshDir = (): Promise<string> => mkdtemp(path.join(os.tmpdir(), 'kic-coord-'));
// Every test below makes its own directory; the contract suite removes its own too (rm is forced).
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});
const make = (): LocalCoordinator =>
  new LocalCoordinator({
    config: {
      reuseWindow: REUSE_WINDOW_SECONDS,
      kentikApiConcurrency: CONCURRENCY,
      flightLease: LEASE_SECONDS,
    },
    store: new FsStore(dir),
    log: silentLog,
    metrics: createMetrics(),
  });

coordinatorContract('local (filesystem)', {
  async create() {
    dir = await freshDir();
    return make();
  },
  async reopen() {
    return make();
  },
  async cleanup() {
    await rm(dir, { recursive: true, force: true });
  },
});

describe('LocalCoordinator counts after the first expiry', () => {
  it('stay exact as entries come, settle and go, without a full count each time', async () => {
    dir = await freshDir();
    const c = make();
    await c.open();
    const now = Date.now();
    const hash = (i: number): string => createHash('sha256').update(`counts ${i}`).digest('hex');
    const leases = [];
    // Ten queries expiring a second apart, from now + 1 s.
    for (let i = 0; i < 10; i++) {
      const d = await c.decide(
        withJson({ hash: hash(i), query: { i }, expiresAt: now + 1000 * (i + 1), now }),
      );
      if (d.result === 'miss') leases.push(d.lease);
    }
    // Brute force: what counts() must say at time t.
    const truth = async (t: number): Promise<Record<string, number>> => {
      const out: Record<string, number> = { pending: 0, image: 0, error: 0 };
      for (const e of (await c.page({ limit: 1000 }, t)).entries) out[e.kind]!++;
      return out;
    };
    const check = async (t: number): Promise<void> => {
      expect(await c.counts(t)).toMatchObject(await truth(t));
    };
    await check(now + 2500); // the first full count: 2 expired
    await check(now + 2600); // from the kept count
    // An expired one settles, a live one settles, a new one comes, one is dropped.
    await c.settle(leases[0]!, { kind: 'error', status: 500, errorType: 'x', message: 'x' }, now);
    await c.settle(leases[5]!, { kind: 'error', status: 500, errorType: 'x', message: 'x' }, now);
    await c.decide(withJson({ hash: hash(99), query: { i: 99 }, expiresAt: now + 2700, now }));
    await check(now + 2650);
    await check(now + 2800); // the new one has expired: counted again
    await c.maintain(now + 2800);
    await check(now + 2900);
    await check(now + 7500);
    await c.close();
  });
});

describe('LocalCoordinator ids of one query and one image', () => {
  it('hold one, a few or many ids alike through sharing, settling, expiry and a lost image', async () => {
    dir = await freshDir();
    const now = Date.now();
    const hash = (i: number): string => createHash('sha256').update(`ids ${i}`).digest('hex');
    const digest = createHash('sha256').update('bytes').digest('hex');
    let c = make();
    await c.open();
    const counts = [1, 5, 40]; // ids per query: a string, an array, a Set
    const leases = [];
    for (const [q, n] of counts.entries()) {
      for (let i = 0; i < n; i++) {
        // Each POST asks for a longer life than the last: a new id sharing the flight (rule 2).
        const d = await c.decide(
          withJson({ hash: hash(q), query: { q }, expiresAt: now + 10_000 + i * 1000, now }),
        );
        if (d.result === 'miss') leases.push(d.lease);
      }
    }
    expect(
      await c.sharing(
        counts.map((_, q) => hash(q)),
        now,
      ),
    ).toEqual(counts);
    await c.putBlob(digest, Buffer.from('bytes'), now + 60_000);
    for (const lease of leases)
      await c.settle(
        lease,
        { kind: 'image', digest, mime: 'image/png', size: 5, fetchedAt: now },
        now,
      );
    expect(
      await c.sharing(
        counts.map((_, q) => hash(q)),
        now,
      ),
    ).toEqual(counts);

    // Pending entries loaded again share their flight's query object.
    const pendingHash = hash(9);
    const queries = [{ q: 9 }, { q: 9 }, { q: 9 }];
    for (const [i, query] of queries.entries())
      await c.decide(withJson({ hash: pendingHash, query, expiresAt: now + 10_000 + i, now }));
    await c.close();
    c = make();
    expect((await c.open()).loaded).toBe(46 + 3);
    const pending = (await c.page({ limit: 100, kind: 'pending' }, now)).entries;
    expect(pending).toHaveLength(3);
    for (const e of pending)
      expect(e.kind === 'pending' && e.query).toBe(
        pending[0]!.kind === 'pending' && pending[0]!.query,
      );

    // The first 20 ids of each query expire: 1 → 0, 5 → 0, 40 → 20.
    await c.maintain(now + 10_000 + 19_500);
    expect(
      await c.sharing(
        counts.map((_, q) => hash(q)),
        now + 29_500,
      ),
    ).toEqual([0, 0, 20]);
    // The image goes missing: every id still using it goes, and nothing is left of them.
    await c.dropBlob(digest, 'lost');
    expect(
      await c.sharing(
        counts.map((_, q) => hash(q)),
        now,
      ),
    ).toEqual([0, 0, 0]);
    expect((await c.page({ limit: 100, kind: 'image' }, now)).entries).toEqual([]);
    await c.close();
  });
});

describe('LocalCoordinator creation order', () => {
  it('never makes an id dropped before its expiry again while its place is kept: pages list it once', async () => {
    dir = await freshDir();
    const c = make();
    await c.open();
    const now = Date.now();
    const hash = createHash('sha256').update('order').digest('hex');
    const digest = createHash('sha256').update('order bytes').digest('hex');
    const input = withJson({ hash, query: { q: 'order' }, expiresAt: now + 60_000, now });
    const first = await c.decide(input);
    if (first.result !== 'miss') throw new Error(first.result);
    await c.putBlob(digest, Buffer.from('order bytes'), now + 60_000);
    await c.settle(
      first.lease,
      { kind: 'image', digest, mime: 'image/png', size: 11, fetchedAt: now },
      now,
    );
    await c.dropBlob(digest, 'lost'); // the id goes long before its expiry
    const again = await c.decide(input);
    expect(again.id).not.toBe(first.id); // a millisecond later, rather than the same id again
    const listed = (await c.page({ limit: 100 }, now)).entries.map((e) => e.id);
    expect(listed).toEqual([again.id]);
    await c.close();
  });
});

describe('LocalCoordinator new flights and their entry write', () => {
  /** A real store whose entry writes wait for `release`, or fail with `fail`. */
  class GatedStore extends FsStore {
    release!: () => void;
    fail!: (err: Error) => void;
    override async putEntry(...args: Parameters<FsStore['putEntry']>): Promise<void> {
      await new Promise<void>((resolve, reject) => {
        this.release = resolve;
        this.fail = reject;
      });
      return super.putEntry(...args);
    }
  }
  const gated = (store: GatedStore): LocalCoordinator =>
    new LocalCoordinator({
      config: {
        reuseWindow: REUSE_WINDOW_SECONDS,
        kentikApiConcurrency: CONCURRENCY,
        flightLease: LEASE_SECONDS,
      },
      store,
      log: silentLog,
      metrics: createMetrics(),
    });
  const openGated = async () => {
    dir = await freshDir();
    const store = new GatedStore(dir);
    const c = gated(store);
    await c.open();
    return { store, c, now: Date.now() };
  };
  const hash = createHash('sha256').update('overlap').digest('hex');

  it('hand the lease over before the entry is durable, and the id only after', async () => {
    const { store, c, now } = await openGated();
    const started: string[] = [];
    let decided = false;
    const decision = c
      .decide(
        withJson({
          hash,
          query: { q: 1 },
          expiresAt: now + 60_000,
          now,
          onFlight: (lease) => started.push(lease.token),
        }),
      )
      .then((d) => {
        decided = true;
        return d;
      });
    await new Promise((r) => setImmediate(r));
    expect(started).toHaveLength(1);
    expect(decided).toBe(false);
    store.release();
    const d = await decision;
    expect(d.result).toBe('miss');
    if (d.result === 'miss') expect(d.lease.token).toBe(started[0]);
    await c.close();
  });

  it('withdraw the flight when the entry cannot be written: its result is rejected', async () => {
    const { store, c, now } = await openGated();
    let lease: Parameters<LocalCoordinator['settle']>[0] | undefined;
    const decision = c.decide(
      withJson({
        hash,
        query: { q: 1 },
        expiresAt: now + 60_000,
        now,
        onFlight: (l) => (lease = l),
      }),
    );
    await new Promise((r) => setImmediate(r));
    store.fail(Object.assign(new Error('disk gone'), { code: 'EIO' }));
    await expect(decision).rejects.toMatchObject({ statusCode: 503 });
    expect(lease).toBeDefined();
    const result = await c.settle(
      lease!,
      { kind: 'error', status: 500, errorType: 'x', message: 'x' },
      now,
    );
    expect(result.accepted).toBe(false);
    expect(await c.counts(now)).toMatchObject({ pending: 0 });
    await c.close();
  });
});
