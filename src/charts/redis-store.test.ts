import { afterAll, beforeAll } from 'vitest';
import { startRedis, type RedisServer } from '../../test/helpers/chart-redis-server.ts';
import { connectChartRedis } from './redis-client.ts';
import { RedisChartStore } from './redis-store.ts';
import { chartStoreContract } from './store.contract.ts';

let redis: RedisServer;
let run = 0;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

const open = async (): Promise<RedisChartStore> => {
  const client = await connectChartRedis(redis.url);
  return new RedisChartStore(client, `test${run}:`, () => client.close());
};

chartStoreContract('RedisChartStore', {
  async create() {
    run++; // a fresh key prefix per test: an empty store without FLUSHALL
    return open();
  },
  reopen: open,
});
