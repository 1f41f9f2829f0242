import { afterAll, beforeAll } from 'vitest';
import { startRedis, stopAllRedis, type RedisServer } from '../../test/helpers/redis-server.ts';
import { createRedisLink } from '../coordination/redis/client.ts';
import { Secret } from '../secret.ts';
import { chartRedis } from './redis-link.ts';
import { RedisChartStore } from './redis-store.ts';
import { chartStoreContract } from './store.contract.ts';

let redis: RedisServer;
let run = 0;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await stopAllRedis();
});

const open = async (): Promise<RedisChartStore> => {
  const link = createRedisLink(new Secret(redis.url), () => {});
  await link.connect();
  return new RedisChartStore(chartRedis(link), `test${run}:`, () => link.close());
};

chartStoreContract('RedisChartStore', {
  async create() {
    run++; // a fresh key prefix per test: an empty store without FLUSHALL
    return open();
  },
  reopen: open,
});
