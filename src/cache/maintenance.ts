import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.ts';
import type { Metrics } from '../metrics.ts';
import type { Store } from '../store/store.ts';
import type { ImageCache } from './image-cache.ts';

/** Ids handled per slice; between slices the event loop serves requests. */
const SLICE = 500;
/** Orphan blob files are looked for on the first pass and then every this many passes. */
const ORPHAN_SCAN_EVERY = 10;

export interface MaintenanceReport {
  expired: number;
  blobsDeleted: number;
  orphansDeleted: number;
  tempFilesDeleted: number;
  evicted: number;
  durationMs: number;
}

export interface Maintenance {
  runOnce(): Promise<MaintenanceReport>;
  start(): void;
  stop(): Promise<void>;
}

export function createMaintenance(deps: {
  config: Pick<Config, 'maintenancePeriodMs' | 'cacheMaxBytes'>;
  cache: ImageCache;
  store: Store;
  log: FastifyBaseLogger;
  metrics: Metrics;
}): Maintenance {
  const { config, cache, store, log, metrics } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<MaintenanceReport> | undefined;
  let passes = 0;

  async function pass(): Promise<MaintenanceReport> {
    const started = performance.now();
    const expiredIds = cache.expiredIds();
    for (let i = 0; i < expiredIds.length; i += SLICE) {
      await cache.removeExpired(expiredIds.slice(i, i + SLICE));
      await yieldToLoop();
    }
    cache.pruneGroups();

    let evicted = 0;
    if (config.cacheMaxBytes !== undefined) evicted = await cache.evictToFit(config.cacheMaxBytes);

    let blobsDeleted = 0;
    for (const digest of cache.unusedBlobs()) {
      await cache.deleteBlob(digest);
      blobsDeleted++;
    }

    let orphansDeleted = 0;
    if (passes % ORPHAN_SCAN_EVERY === 0) {
      const onDisk = await store.listBlobs();
      for (let i = 0; i < onDisk.length; i++) {
        const digest = onDisk[i]!;
        if (!cache.isKnownDigest(digest)) {
          await store.deleteBlob(digest);
          orphansDeleted++;
        }
        if (i % SLICE === SLICE - 1) await yieldToLoop();
      }
    }
    passes++;

    await cache.checkpoint();
    const tempFilesDeleted = await store.sweepTemporary();
    const durationMs = Math.round(performance.now() - started);
    metrics.maintenanceDuration.observe(durationMs / 1000);
    const report = {
      expired: expiredIds.length,
      blobsDeleted,
      orphansDeleted,
      tempFilesDeleted,
      evicted,
      durationMs,
    };
    const worthSaying =
      report.expired + blobsDeleted + orphansDeleted + tempFilesDeleted + evicted > 0;
    log[worthSaying ? 'info' : 'debug'](report, 'maintenance pass');
    return report;
  }

  function runOnce(): Promise<MaintenanceReport> {
    // Never two passes at once: a slow disk must not stack them up.
    running ??= pass().finally(() => {
      running = undefined;
    });
    return running;
  }

  function schedule(): void {
    timer = setTimeout(() => {
      runOnce()
        .catch((err: unknown) => log.error({ err }, 'maintenance pass failed'))
        .finally(() => {
          if (timer) schedule();
        });
    }, config.maintenancePeriodMs);
    timer.unref();
  }

  return {
    runOnce,
    start() {
      if (!timer) schedule();
    },
    async stop() {
      clearTimeout(timer);
      timer = undefined;
      await running?.catch(() => {});
    },
  };
}
