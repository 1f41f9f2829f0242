import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { startSimulator, type Simulator } from '../src/simulator/index.ts';
import { startRedis, stopAllRedis, type RedisServer } from './helpers/redis-server.ts';
import { kentikQuery, tempDir, removeDir, TEST_TOKEN } from './helpers/service.ts';

/*
 * The orchestrator's read API and events, as the dashboard and the charts use them in-process:
 * counts(), page(), and cache.events — fed across replicas by Redis pub/sub.
 */

let sim: Simulator;
let redis: RedisServer;
const apps: App[] = [];
const dirs: string[] = [];

async function app(env: Record<string, string>): Promise<App> {
  const config = loadConfig({
    KT_AUTH_EMAIL: 'test@example.com',
    KT_AUTH_TOKEN: TEST_TOKEN,
    KENTIK_API_URL: sim.url,
    KENTIK_API_RETRIES: '0',
    ...env,
  });
  const a = await buildApp({ config, logger: false });
  apps.push(a);
  return a;
}

async function post(a: App, query: unknown, ttl = 300): Promise<string> {
  const r = await a.app.inject({
    method: 'POST',
    url: '/requests',
    payload: { api_query: query, ttl },
  });
  expect(r.statusCode).toBe(200);
  return r.json().id as string;
}

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: TEST_TOKEN });
  redis = await startRedis();
});
afterAll(async () => {
  for (const a of apps) await a.app.close();
  for (const d of dirs) removeDir(d);
  await stopAllRedis();
  await sim.close();
});

describe('read API and events', () => {
  it('filesystem: created and settled events, counts and newest-first pages', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const a = await app({ CACHE_PATH: dir });
    const created: string[] = [];
    const settled: string[] = [];
    a.cache.events.on('created', (ids: string[]) => created.push(...ids));
    a.cache.events.on('settled', (ids: string[]) => settled.push(...ids));
    sim.setFaults({ latencyMs: 100 });
    const first = await post(a, kentikQuery('events-1'));
    const second = await post(a, kentikQuery('events-2'));
    expect(created).toEqual([first, second]);
    expect((await a.cache.counts()).pending).toBe(2);
    for (const id of [first, second])
      expect((await a.app.inject({ url: `/image/${id}` })).statusCode).toBe(200);
    expect(settled.sort()).toEqual([first, second].sort());
    const counts = await a.cache.counts();
    expect(counts).toMatchObject({ pending: 0, image: 2, error: 0 });
    expect(counts.storedBytes).toBeGreaterThan(0);
    const page = await a.cache.page({ limit: 1 });
    expect(page.entries.map((e) => e.id)).toEqual([second]);
    const rest = await a.cache.page({ limit: 1000, cursor: page.next });
    expect(rest.entries.map((e) => e.id)).toEqual([first]);
    expect(rest.next).toBeUndefined();
    // The hard maximum holds whatever is asked.
    expect((await a.cache.page({ limit: 1e9 })).entries.length).toBe(2);
  });

  it('redis: a settle on one replica reaches the events and waiters of another', async () => {
    const env = { CACHE_BACKEND: 'redis', REDIS_URL: redis.url, REDIS_KEY_PREFIX: 'events:' };
    const a = await app(env);
    const b = await app(env);
    const settledOnB: Array<{ ids: string[]; hash: string }> = [];
    b.cache.events.on('settled', (ids: string[], hash: string) => settledOnB.push({ ids, hash }));
    sim.setFaults({ latencyMs: 300 });
    const id = await post(a, kentikQuery('events-redis'));
    const waiting = b.app.inject({ url: `/image/${id}` });
    const r = await waiting;
    expect(r.statusCode).toBe(200);
    expect(settledOnB).toContainEqual({ ids: [id], hash: id.slice(0, 64) });
    expect(await b.cache.counts()).toMatchObject({ image: 1, pending: 0 });
    expect((await b.cache.page({ limit: 10 })).entries.map((e) => e.id)).toEqual([id]);
  });
});
