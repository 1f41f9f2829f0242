import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { chartImage, http, putChart } from './helpers/charts.ts';
import {
  expectNoSecret,
  getJson,
  kentikQuery,
  startService,
  type Service,
} from './helpers/service.ts';

let sim: Simulator;
let svc: Service;

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  // Production defaults for the chart settings (refresh ≥ 60), a small MAX_TTL and chart limit.
  svc = await startService({
    KENTIK_API_URL: sim.url,
    KENTIK_API_RETRIES: '0',
    MAX_TTL: '86400',
    CHART_MAX_COUNT: '4',
    ENTRY_WAIT_TIMEOUT: '1',
  });
});
afterAll(async () => {
  await svc.stop();
  expectNoSecret(svc.output);
  await sim.close();
});

/** PUT with the path sent exactly as given (fetch would resolve `..`). */
function rawPut(path: string, body: string): Promise<{ status: number; json: any }> {
  const { hostname, port } = new URL(svc.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { hostname, port, path, method: 'PUT', headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const expectError = (
  r: { status: number; json: any },
  status: number,
  loc: (string | number)[],
  msgPart: string,
): void => {
  expect(r.status, JSON.stringify(r.json)).toBe(status);
  expect(r.json).toMatchObject({ loc });
  expect(typeof r.json.type).toBe('string');
  expect(r.json.msg).toContain(msgPart);
};

describe('bad input gets a clear 4xx JSON error and changes nothing', () => {
  const q = kentikQuery('validation');

  it.each([
    ['too long', 'a'.repeat(101)],
    ['a space', 'a%20b'],
    ['a slash (encoded)', 'a%2Fb'],
    ['a unicode letter', '%C3%A9t%C3%A9'],
    ['a colon', 'a:b'],
    ['a star', 'a*'],
  ])('a name with %s is a 400 on every route', async (_label, name) => {
    for (const r of [
      await putChart(svc.url, name, { api_query: q }),
      await http(`${svc.url}/charts/${name}`),
      await http(`${svc.url}/charts/${name}/image`),
      await http(`${svc.url}/charts/${name}`, { method: 'DELETE' }),
    ])
      expectError(r, 400, ['path', 'name'], '1–100 characters of A–Z');
  });

  it('"." and ".." (dot-segments no browser sends) are a 400', async () => {
    for (const name of ['.', '..']) {
      const r = await rawPut(`/charts/${name}`, JSON.stringify({ api_query: q }));
      expectError(r, 400, ['path', 'name'], 'not "." or ".."');
    }
  });

  it('names use the whole allowed alphabet, 1 to 100 characters', async () => {
    for (const name of ['a', 'A.b_c-9', 'x'.repeat(100), '...'])
      expect((await putChart(svc.url, name, { api_query: q, refresh: 60 })).status).toBe(201);
    expect((await getJson(`${svc.url}/charts/...`)).name).toBe('...');
    for (const name of ['a', 'A.b_c-9', 'x'.repeat(100), '...'])
      expect((await http(`${svc.url}/charts/${name}`, { method: 'DELETE' })).status).toBe(204);
  });

  it.each([
    ['below 60', 59],
    ['zero', 0],
    ['negative', -300],
    ['fractional', 300.5],
    ['a string', '300'],
    ['null', null],
    ['above MAX_TTL', 86_401],
    ['a boolean', true],
  ])('refresh %s is a 400 that states the range', async (_label, refresh) => {
    const r = await putChart(svc.url, 'bad-refresh', { api_query: q, refresh });
    expectError(r, 400, ['body', 'refresh'], 'from 60 to 86400 (MAX_TTL)');
    expect((await http(`${svc.url}/charts/bad-refresh`)).status).toBe(404); // nothing was created
  });

  it.each([
    ['no api_query', { refresh: 300 }, ['body', 'api_query'], 'api_query is required'],
    ['api_query an array', { api_query: [] }, ['body', 'api_query'], 'must be a JSON object'],
    ['api_query null', { api_query: null }, ['body', 'api_query'], 'must be a JSON object'],
    ['a ttl instead of refresh', { api_query: {}, ttl: 60 }, ['body', 'ttl'], 'not a ttl'],
    ['a body that is an array', [1], ['body'], 'must be a JSON object'],
    [
      'a deeply nested query',
      { api_query: JSON.parse('{"a":'.repeat(100) + '1' + '}'.repeat(100)) },
      ['body', 'api_query'],
      'nested deeper',
    ],
    [
      'a huge query',
      { api_query: { filler: 'x'.repeat(70 * 1024) } },
      ['body', 'api_query'],
      'larger than 64 KiB',
    ],
  ])('%s is a 400', async (_label, body, loc, msg) => {
    expectError(await putChart(svc.url, 'bad-body', body), 400, loc, msg);
    expect((await http(`${svc.url}/charts/bad-body`)).status).toBe(404);
  });

  it('a body that is not JSON is a 400, a non-JSON content type a 415', async () => {
    expectError(
      await putChart(svc.url, 'not-json', '{"api_query": '),
      400,
      ['body'],
      'not valid JSON',
    );
    const r = await http(`${svc.url}/charts/not-json`, {
      method: 'PUT',
      headers: { 'content-type': 'text/plain' },
      body: 'hello',
    });
    expect(r.status).toBe(415);
  });

  it('unknown charts are a 404 on GET, image, HEAD and DELETE', async () => {
    for (const r of [
      await http(`${svc.url}/charts/nope`),
      await chartImage(svc.url, 'nope'),
      await http(`${svc.url}/charts/nope`, { method: 'DELETE' }),
    ])
      expectError(r, 404, ['path', 'name'], 'No chart named "nope"');
    expect((await http(`${svc.url}/charts/nope/image`, { method: 'HEAD' })).status).toBe(404);
  });

  it('bad paging parameters are a 400', async () => {
    expectError(
      await http(`${svc.url}/charts?limit=0`),
      400,
      ['querystring', 'limit'],
      'from 1 to 1000',
    );
    expectError(
      await http(`${svc.url}/charts?limit=abc`),
      400,
      ['querystring', 'limit'],
      'from 1 to 1000',
    );
    expectError(
      await http(`${svc.url}/charts?after=a%2Fb`),
      400,
      ['querystring', 'after'],
      'chart name',
    );
  });

  it('CHART_MAX_COUNT caps new charts (409) but replacing one still works', async () => {
    for (const n of ['cap-0', 'cap-1', 'cap-2', 'cap-3'])
      expect((await putChart(svc.url, n, { api_query: q, refresh: 60 })).status).toBe(201);
    expectError(
      await putChart(svc.url, 'cap-4', { api_query: q }),
      409,
      ['path', 'name'],
      'CHART_MAX_COUNT',
    );
    expect((await putChart(svc.url, 'cap-2', { api_query: q, refresh: 120 })).status).toBe(200);
    expect((await http(`${svc.url}/charts/cap-3`, { method: 'DELETE' })).status).toBe(204);
    expect((await putChart(svc.url, 'cap-4', { api_query: q })).status).toBe(201);
    expect((await getJson(`${svc.url}/charts`)).total).toBe(4);
  });

  it('a first image still pending after ENTRY_WAIT_TIMEOUT is a 504 like GET /image/{id}; its fetch goes on and serves the next request', async () => {
    sim.reset();
    sim.setFaults({ latencyMs: 1600 });
    const slow = kentikQuery('slow-first');
    // Replaces a chart of the limit test when it ran (CHART_MAX_COUNT is reached then).
    expect([200, 201]).toContain(
      (await putChart(svc.url, 'cap-0', { api_query: slow, refresh: 600 })).status,
    );
    const fetched = svc.waitForLog((l) => l.msg === 'kentik call' && l.outcome === 'ok');
    const r = await chartImage(svc.url, 'cap-0');
    expectError(r, 504, ['path', 'name'], 'still being fetched');
    expect(r.headers.get('retry-after')).toBe('5');
    await fetched;
    const later = await chartImage(svc.url, 'cap-0');
    expect(later.status).toBe(200);
    expect(sim.stats().total).toBe(1);
    sim.reset();
  });

  it('/docs describes every chart endpoint', async () => {
    const spec = await getJson(`${svc.url}/openapi.json`);
    expect(Object.keys(spec.paths['/charts'])).toContain('get');
    expect(Object.keys(spec.paths['/charts/{name}']).sort()).toEqual(['delete', 'get', 'put']);
    expect(Object.keys(spec.paths['/charts/{name}/image'])).toContain('get');
    expect(spec.paths['/charts/{name}/image'].get.description).toContain('stale-while-revalidate');
  });
});
