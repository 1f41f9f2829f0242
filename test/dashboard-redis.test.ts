// The dashboard's data with CACHE_BACKEND=redis: two replicas on one real redis-server show the same
// entries, with their queries in words (carried through the Redis scripts), sharing and the backend.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { chartImage, putChart } from './helpers/charts.ts';
import { startRedis, stopAllRedis, type RedisServer } from './helpers/redis-server.ts';
import {
  getImage,
  getJson,
  kentikQuery,
  requestImage,
  startService,
  type Service,
} from './helpers/service.ts';

let sim: Simulator;
let redis: RedisServer;
let a: Service;
let b: Service;

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  redis = await startRedis({});
  const env = {
    CACHE_BACKEND: 'redis',
    CACHE_PATH: '',
    REDIS_URL: redis.url,
    KENTIK_API_URL: sim.url,
    KENTIK_API_RETRIES: '0',
  };
  a = await startService(env);
  b = await startService(env);
});
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await stopAllRedis();
  await sim?.close();
});

describe('dashboard data on Redis', () => {
  it('shows entries of every replica with query summaries, sharing and errors', async () => {
    const q = kentikQuery('redis-dash', 'jpeg');
    const id1 = await requestImage(a.url, q, 60);
    await getImage(a.url, id1);
    // Rule 2 on the other replica: a new id reusing the image (entry built inside a Redis script).
    const id2 = await requestImage(b.url, q, 120);
    const bad = kentikQuery('redis-bad');
    (bad.queries as Array<{ query: Record<string, unknown> }>)[0]!.query.metric = ['buckets'];
    const idBad = await requestImage(b.url, bad);
    await getImage(b.url, idBad);
    for (const svc of [a, b]) {
      const page = await getJson(`${svc.url}/dashboard/api/entries?limit=10`);
      const byId = new Map<string, any>(page.entries.map((e: any) => [e.id, e]));
      for (const id of [id1, id2]) {
        expect(byId.get(id)).toMatchObject({
          type: 'image',
          mime: 'image/jpeg',
          shares: 2,
          query_summary: { title: 'test query redis-dash', image_type: 'jpeg' },
        });
      }
      expect(byId.get(idBad)).toMatchObject({
        type: 'api_error',
        error: { status: 400, message: expect.stringContaining("Invalid metric 'buckets'") },
        query_summary: { title: 'test query redis-bad', metrics: ['buckets'] },
      });
      const found = await getJson(`${svc.url}/dashboard/api/entries?q=redis-dash&image_type=jpeg`);
      expect(found.entries.map((e: any) => e.id).sort()).toEqual([id1, id2].sort());
      const status = await getJson(`${svc.url}/dashboard/api/status`);
      expect(status.backend).toBe('redis');
      expect(status.entries).toMatchObject({ ready: 2, failed: 1, pending: 0 });
    }
  });

  it('lists named charts defined and refreshed on another replica', async () => {
    expect(
      (await putChart(a.url, 'redis-chart', { api_query: kentikQuery('redis-chart') })).status,
    ).toBe(201);
    expect((await chartImage(a.url, 'redis-chart')).status).toBe(200);
    const page = await getJson(`${b.url}/dashboard/api/charts`);
    expect(page).toMatchObject({ total: 1, next: null });
    expect(page.charts[0]).toMatchObject({
      name: 'redis-chart',
      health: 'fresh',
      image: { mime: 'image/png' },
      query_summary: { title: 'test query redis-chart' },
    });
    expect((await getJson(`${b.url}/dashboard/api/status`)).charts).toEqual({ defined: 1 });
  });
});
