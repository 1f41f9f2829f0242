import { afterAll, beforeAll } from 'vitest';
import { startRedis, stopAllRedis, type RedisServer } from '../../../test/helpers/redis-server.ts';
import { createMetrics } from '../../metrics.ts';
import { Secret } from '../../secret.ts';
import {
  CONCURRENCY,
  coordinatorContract,
  LEASE_SECONDS,
  REUSE_WINDOW_SECONDS,
  silentLog,
} from '../coordinator.contract.ts';
import { RedisCoordinator } from './redis-coordinator.ts';

let redis: RedisServer;
let prefix = '';
let n = 0;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await stopAllRedis();
});

const make = (): RedisCoordinator =>
  new RedisCoordinator({
    config: {
      redisUrl: new Secret(redis.url),
      redisKeyPrefix: prefix,
      reuseWindow: REUSE_WINDOW_SECONDS,
      kentikApiConcurrency: CONCURRENCY,
      flightLease: LEASE_SECONDS,
    },
    log: silentLog,
    metrics: createMetrics(),
  });

coordinatorContract('redis', {
  async create() {
    // Each test gets its own key prefix: one redis-server, no state shared between tests.
    prefix = `t${++n}:`;
    return make();
  },
  async peer() {
    return make();
  },
  async reopen() {
    return make();
  },
});
