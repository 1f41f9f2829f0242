import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsChartStore } from '../charts/fs-store.ts';
import { createChartMetrics } from '../charts/metrics.ts';
import { ChartService, type ChartImageSource } from '../charts/service.ts';
import { loadConfig } from '../config.ts';
import { chartReadRoutes, chartWriteRoutes } from './charts.ts';
import { ErrorBody } from './schemas.ts';

/*
 * The write routes carry `config.access = 'api-key'`, the marker the service's API-key guard
 * enforces (an onRequest hook on the root instance). A stand-in guard with the same contract
 * shows that PUT and DELETE ask for it and that reads stay open.
 */

let dir: string;
let app: FastifyInstance;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kic-chart-routes-'));
  const config = loadConfig({ KT_AUTH_EMAIL: 'a@b.c', KT_AUTH_TOKEN: 't', CACHE_PATH: dir });
  const store = new FsChartStore(dir);
  await store.open();
  const noCache = {} as ChartImageSource; // no image is requested here
  const charts = new ChartService({
    config,
    cache: noCache,
    store,
    log: Fastify().log,
    metrics: createChartMetrics(new Registry(), store),
  });
  app = Fastify();
  app.addSchema(ErrorBody);
  app.addHook('onRequest', async (request, reply) => {
    const access = (request.routeOptions.config as { access?: string } | undefined)?.access;
    if (access === 'api-key' && request.headers['x-api-key'] !== 'k')
      return reply.code(401).send({ type: 'Unauthorized', loc: ['header'], msg: 'key' });
  });
  await app.register(chartReadRoutes, { charts, config });
  await app.register(chartWriteRoutes, { charts, config });
});
afterAll(async () => {
  await app.close();
  await rm(dir, { recursive: true, force: true });
});

describe('chart routes and access control', () => {
  const body = { api_query: { queries: [] }, refresh: 300 };

  it('PUT and DELETE ask for an API key', async () => {
    const put = await app.inject({ method: 'PUT', url: '/charts/guarded', payload: body });
    expect(put.statusCode).toBe(401);
    const del = await app.inject({ method: 'DELETE', url: '/charts/guarded' });
    expect(del.statusCode).toBe(401);
    const withKey = await app.inject({
      method: 'PUT',
      url: '/charts/guarded',
      payload: body,
      headers: { 'x-api-key': 'k' },
    });
    expect(withKey.statusCode).toBe(201);
  });

  it('reading charts stays open', async () => {
    expect((await app.inject({ method: 'GET', url: '/charts/guarded' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/charts' })).statusCode).toBe(200);
  });
});
