import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.ts';
import type { MaintenanceReport as CoordinatorReport } from '../coordination/coordinator.ts';
import type { Metrics } from '../metrics.ts';
import type { ImageCache } from './image-cache.ts';

export interface MaintenanceReport extends CoordinatorReport {
  durationMs: number;
}

export interface Maintenance {
  runOnce(): Promise<MaintenanceReport>;
  start(): void;
  stop(): Promise<void>;
}

/**
 * Runs the coordinator's housekeeping (expiry, eviction, unused and orphaned bytes, snapshot)
 * every CACHE_MAINTENANCE_PERIOD, one pass at a time.
 */
export function createMaintenance(deps: {
  config: Pick<Config, 'maintenancePeriodMs'>;
  cache: ImageCache;
  log: FastifyBaseLogger;
  metrics: Metrics;
}): Maintenance {
  const { config, cache, log, metrics } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<MaintenanceReport> | undefined;

  async function pass(): Promise<MaintenanceReport> {
    const started = performance.now();
    const done = await cache.maintain();
    const durationMs = Math.round(performance.now() - started);
    metrics.maintenanceDuration.observe(durationMs / 1000);
    const report = { ...done, durationMs };
    const worthSaying =
      done.expired +
        done.blobsDeleted +
        done.orphansDeleted +
        done.tempFilesDeleted +
        done.evicted >
      0;
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
