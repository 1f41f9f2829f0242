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
    dir = await mkdtemp(path.join(os.tmpdir(), 'kic-coord-'));
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
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stay exact as entries come, settle and go, without a full count each time', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'kic-coord-'));
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
