import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from '../src/domain/hash.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { chartImage, http, nextLog, putChart, refreshed, svg } from './helpers/charts.ts';
import { startRedis, stopAllRedis, type RedisServer } from './helpers/redis-server.ts';
import {
  expectNoSecret,
  getJson,
  kentikQuery,
  metric,
  startService,
  type Service,
} from './helpers/service.ts';

/*
 * Named charts with CACHE_BACKEND=redis: two replicas on one real redis-server share the charts,
 * their state and one refresh per chart across both.
 */

let sim: Simulator;
let redis: RedisServer;
let a: Service;
let b: Service;
const services: Service[] = [];
const calls = (q: unknown): number => sim.stats().byHash[queryHash(q)]?.calls ?? 0;

async function replica(): Promise<Service> {
  const svc = await startService({
    CACHE_BACKEND: 'redis',
    CACHE_PATH: '',
    REDIS_URL: redis.url,
    KENTIK_API_URL: sim.url,
    KENTIK_API_RETRIES: '0',
    REUSE_WINDOW: '0',
    CHART_MIN_REFRESH: '1',
  });
  services.push(svc);
  return svc;
}

async function untilDue(base: string, name: string): Promise<void> {
  const chart = await getJson(`${base}/charts/${name}`);
  const wait = Date.parse(chart.due_at) - Date.now() + 50;
  if (wait > 0) await sleep(wait);
}

/** Refreshes that produced an image, summed over both replicas. */
async function refreshes(): Promise<number> {
  let n = 0;
  for (const svc of [a, b])
    for (const outcome of ['fetched', 'shared'])
      n += await metric(svc.url, 'kic_chart_refreshes_total', { outcome });
  return n;
}

/** Resolves when either replica logs the chart's next refresh. */
function anyRefresh(name: string): Promise<unknown> {
  return Promise.any([nextLog(a, refreshed(name)), nextLog(b, refreshed(name))]);
}

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  redis = await startRedis();
  [a, b] = await Promise.all([replica(), replica()]);
});
afterAll(async () => {
  for (const s of services) await s.stop();
  for (const s of services) expectNoSecret(s.output);
  await stopAllRedis();
  await sim?.close();
});
beforeEach(() => sim.reset());

describe('charts shared by replicas through Redis', () => {
  it('a chart defined on one replica is listed, served and deleted on the other', async () => {
    const q = kentikQuery('redis-shared');
    expect((await putChart(a.url, 'redis-shared', { api_query: q, refresh: 600 })).status).toBe(
      201,
    );
    const onB = await getJson(`${b.url}/charts/redis-shared`);
    expect(onB).toMatchObject({ name: 'redis-shared', refresh: 600, api_query: q });
    const list = await getJson(`${b.url}/charts?limit=1000`);
    expect(list.charts.map((c: { name: string }) => c.name)).toContain('redis-shared');

    const fromA = await chartImage(a.url, 'redis-shared');
    expect(fromA.status).toBe(200);
    const fromB = await chartImage(b.url, 'redis-shared');
    expect(fromB.status).toBe(200);
    expect(fromB.headers.get('etag')).toBe(fromA.headers.get('etag'));
    expect(calls(q)).toBe(1); // B served A's image from the shared cache

    expect((await http(`${b.url}/charts/redis-shared`, { method: 'DELETE' })).status).toBe(204);
    expect((await chartImage(a.url, 'redis-shared')).status).toBe(404);
    expect(await metric(a.url, 'kic_charts_defined')).toBe(
      await metric(b.url, 'kic_charts_defined'),
    );
  });

  it('the first requests on both replicas make one upstream call', async () => {
    const q = kentikQuery('redis-first');
    await putChart(a.url, 'redis-first', { api_query: q, refresh: 600 });
    sim.setFaults({ latencyMs: 500 });
    const before = await refreshes();
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => chartImage(i % 2 ? a.url : b.url, 'redis-first')),
    );
    for (const r of answers) expect(r.status).toBe(200);
    expect(new Set(answers.map((r) => r.headers.get('etag'))).size).toBe(1);
    expect(calls(q)).toBe(1);
    expect(await refreshes()).toBe(before + 1); // one replica refreshed; the other waited for it
  });

  it('concurrent requests on a stale chart, on both replicas, cause one refresh', async () => {
    const q = kentikQuery('redis-stale', 'svg');
    await putChart(a.url, 'redis-stale', { api_query: q, refresh: 1 });
    sim.script([{ kind: 'svg-raw', svg: svg('r1') }]);
    expect((await chartImage(a.url, 'redis-stale')).bytes.toString()).toBe(svg('r1'));
    await untilDue(a.url, 'redis-stale');

    sim.setFaults({ latencyMs: 500 });
    sim.script([{ kind: 'svg-raw', svg: svg('r2') }]);
    const before = await refreshes();
    const done = anyRefresh('redis-stale');
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => chartImage(i % 2 ? a.url : b.url, 'redis-stale')),
    );
    for (const r of answers) {
      expect(r.status).toBe(200);
      expect(r.bytes.toString()).toBe(svg('r1')); // served stale at once
      expect(r.headers.get('x-chart-stale')).not.toBeNull();
    }
    await done;
    expect(calls(q)).toBe(2);
    expect(await refreshes()).toBe(before + 1); // one refresh across the cluster (the lock)
    for (const base of [a.url, b.url])
      expect((await chartImage(base, 'redis-stale')).bytes.toString()).toBe(svg('r2'));
    expect(calls(q)).toBe(2);
  });

  it('charts survive a restart of every replica', async () => {
    const q = kentikQuery('redis-restart');
    await putChart(b.url, 'redis-restart', { api_query: q, refresh: 900 });
    const before = await chartImage(b.url, 'redis-restart');
    await Promise.all([a.stop(), b.stop()]);
    [a, b] = await Promise.all([replica(), replica()]);
    expect((await getJson(`${a.url}/charts/redis-restart`)).refresh).toBe(900);
    const after = await chartImage(a.url, 'redis-restart');
    expect(after.status).toBe(200);
    expect(after.headers.get('etag')).toBe(before.headers.get('etag'));
    expect(calls(q)).toBe(1);
  });
});

describe('Redis unreachable', () => {
  it('chart routes answer 503 with Retry-After, not 500', async () => {
    await putChart(a.url, 'redis-down', { api_query: kentikQuery('redis-down'), refresh: 600 });
    await redis.stop();
    for (const r of [
      await http(`${a.url}/charts/redis-down`),
      await putChart(a.url, 'redis-down', { api_query: kentikQuery('redis-down'), refresh: 600 }),
      await http(`${a.url}/charts`),
    ]) {
      expect(r.status).toBe(503);
      expect(r.json.type).toBe('Service unavailable');
      expect(r.headers.get('retry-after')).toBeTruthy();
    }
  });
});
