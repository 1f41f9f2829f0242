import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createMetrics } from '../metrics.ts';
import { FsStore } from '../store/fs-store.ts';
import {
  CONCURRENCY,
  coordinatorContract,
  LEASE_SECONDS,
  REUSE_WINDOW_SECONDS,
  silentLog,
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
