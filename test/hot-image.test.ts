/**
 * The hot image path (src/routes/hot-image.ts): GET and HEAD /image/{id} of an image held in memory
 * are answered before fastify. Against a real process: its answers are exactly the route's
 * (`/image/{id}?…` always goes through the route), it counts into the same metrics and served
 * counts, and it logs one summary line per interval instead of one line per request.
 */
import { startSimulator, type Simulator } from 'kentik-simulator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SVG_CSP } from '../src/routes/image-response.ts';
import {
  expectNoSecret,
  getJson,
  kentikQuery,
  metric,
  requestImage,
  startService,
  type Service,
} from './support/index.ts';

let sim: Simulator;
let svc: Service;
let png: string;
let svg: string;
/** Answers the hot path gave, by "METHOD status": what its summary lines must add up to. */
const hotAnswers: Record<string, number> = {};

interface Answer {
  status: number;
  headers: Array<[string, string]>;
  body: Buffer;
}

/** One answer, its headers in full but for Date (a clock, not the answer). */
async function answer(path: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(`${svc.url}${path}`, init);
  const body = Buffer.from(await res.arrayBuffer());
  const headers = [...res.headers].filter(([name]) => name !== 'date');
  return { status: res.status, headers, body };
}

/** From the hot path: /image/{id} exactly. Counted for the summary line. */
async function hot(id: string, init: RequestInit = {}): Promise<Answer> {
  const a = await answer(`/image/${id}`, init);
  const key = `${init.method ?? 'GET'} ${a.status}`;
  hotAnswers[key] = (hotAnswers[key] ?? 0) + 1;
  return a;
}

/** From the route: the query string makes the hot path leave it to fastify. */
const routed = (id: string, init: RequestInit = {}): Promise<Answer> =>
  answer(`/image/${id}?via=route`, init);

/** max-age counts down each second: two answers a second boundary apart may differ by one. */
function sameAnswer(a: Answer, b: Answer): void {
  const maxAge = (x: Answer): number =>
    Number(/max-age=(\d+)/.exec(x.headers.find(([n]) => n === 'cache-control')?.[1] ?? '')?.[1]);
  expect(Math.abs(maxAge(a) - maxAge(b))).toBeLessThanOrEqual(1);
  const strip = (x: Answer) => ({
    ...x,
    headers: x.headers.map(([n, v]) => [n, v.replace(/max-age=\d+/, 'max-age=N')]),
  });
  expect(strip(a)).toEqual(strip(b));
}

const hotLines = (): Array<Record<string, any>> =>
  svc.logs().filter((l) => l.msg === 'hot image requests');

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  // The default log level: the summary line is an info line.
  svc = await startService({ KENTIK_API_URL: sim.url, KENTIK_API_RETRIES: '0', LOG_LEVEL: 'info' });
  png = await requestImage(svc.url, kentikQuery('hot-png'));
  svg = await requestImage(svc.url, kentikQuery('hot-svg', 'svg'), 600);
  // The first GET waits for the fetch (the route); from then on both are held in memory.
  for (const id of [png, svg]) expect((await routed(id)).status).toBe(200);
});

afterAll(async () => {
  if (svc.proc.exitCode === null) await svc.stop();
  expectNoSecret(svc.output);
  await sim.close();
});

describe('hot image path', () => {
  it('answers GET with exactly the headers and bytes of the route', async () => {
    for (const id of [png, svg]) {
      const lean = await hot(id);
      expect(lean.status).toBe(200);
      sameAnswer(lean, await routed(id));
      const names = lean.headers.map(([n]) => n);
      for (const name of [
        'etag',
        'cache-control',
        'expires',
        'x-content-type-options',
        'content-disposition',
        'content-type',
        'content-length',
      ])
        expect(names).toContain(name);
      expect(Number(lean.headers.find(([n]) => n === 'content-length')![1])).toBe(lean.body.length);
    }
  });

  it('keeps the SVG policy: content-security-policy on SVG answers only', async () => {
    const csp = (a: Answer) => a.headers.find(([n]) => n === 'content-security-policy')?.[1];
    expect(csp(await hot(svg))).toBe(SVG_CSP);
    expect(csp(await hot(svg, { method: 'HEAD' }))).toBe(SVG_CSP);
    expect(csp(await hot(png))).toBeUndefined();
  });

  it('answers HEAD with the headers of a GET and no body', async () => {
    for (const id of [png, svg]) {
      const head = await hot(id, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.body.length).toBe(0);
      sameAnswer(head, await routed(id, { method: 'HEAD' }));
      const get = await hot(id);
      expect(head.headers.find(([n]) => n === 'content-length')![1]).toBe(String(get.body.length));
    }
  });

  it('answers 304 to a matching If-None-Match (strong, weak, in a list, *), as the route does', async () => {
    for (const id of [png, svg]) {
      const etag = (await hot(id)).headers.find(([n]) => n === 'etag')![1];
      for (const condition of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
        const init = { headers: { 'if-none-match': condition } };
        const lean = await hot(id, init);
        expect(lean.status).toBe(304);
        expect(lean.body.length).toBe(0);
        expect(lean.headers.map(([n]) => n)).not.toContain('content-type');
        sameAnswer(lean, await routed(id, init));
      }
      const other = await hot(id, { headers: { 'if-none-match': '"other"' } });
      expect(other.status).toBe(200);
      // HEAD with If-None-Match is left to the route; still a 304.
      const head = await answer(`/image/${id}`, {
        method: 'HEAD',
        headers: { 'if-none-match': etag },
      });
      expect(head.status).toBe(304);
    }
  });

  it('counts its answers in the same metrics and served counts as the route', async () => {
    const read = async () => ({
      get200: await metric(svc.url, 'kic_http_requests_total', {
        route: '/image/:id',
        method: 'GET',
        status: '200',
      }),
      get304: await metric(svc.url, 'kic_http_requests_total', {
        route: '/image/:id',
        method: 'GET',
        status: '304',
      }),
      head200: await metric(svc.url, 'kic_http_requests_total', {
        route: '/image/:id',
        method: 'HEAD',
        status: '200',
      }),
      durations: await metric(svc.url, 'kic_http_request_duration_seconds_count', {
        route: '/image/:id',
      }),
      lookups: await metric(svc.url, 'kic_image_lookups_total', { result: 'image' }),
      memoryHits: await metric(svc.url, 'kic_memory_hits_total'),
      served: ((await getJson(`${svc.url}/info`)).active_entries as any[]).find((e) => e.id === png)
        .served as number,
    });
    const before = await read();
    const etag = (await hot(png)).headers.find(([n]) => n === 'etag')![1];
    for (let i = 0; i < 4; i++) await hot(png);
    for (let i = 0; i < 3; i++) await hot(png, { headers: { 'if-none-match': etag } });
    for (let i = 0; i < 2; i++) await hot(png, { method: 'HEAD' });
    const after = await read();
    expect({
      get200: after.get200 - before.get200,
      get304: after.get304 - before.get304,
      head200: after.head200 - before.head200,
      durations: after.durations - before.durations,
      lookups: after.lookups - before.lookups,
      memoryHits: after.memoryHits - before.memoryHits,
      served: after.served - before.served,
    }).toEqual({
      get200: 5,
      get304: 3,
      head200: 2,
      durations: 10,
      lookups: 10,
      memoryHits: 10,
      served: 10,
    });
  });

  it('leaves everything else to the route, which logs a line per request', async () => {
    const unknown = `${'0'.repeat(64)}_${Math.floor(Date.now() / 1000) + 600}`;
    const missing = await answer(`/image/${unknown}`);
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body.toString('utf8'))).toMatchObject({ type: 'Not found' });
    expect((await answer(`/image/${png.toUpperCase()}`)).status).toBe(404);
    expect((await answer(`/image/${png}`, { method: 'POST' })).status).toBe(404);
    await svc.waitForLog((l) => l.msg === 'request' && l.url === `/image/${unknown}`);
    await svc.waitForLog((l) => l.msg === 'request' && l.url === `/image/${png}?via=route`);
  });

  it('logs its answers in summary lines, not one line per request, and writes the last at shutdown', async () => {
    expect(
      svc.logs().filter(
        (l) =>
          l.msg === 'request' &&
          l.url === `/image/${png}` &&
          // HEAD with If-None-Match is left to the route.
          !(l.method === 'HEAD' && l.statusCode === 304),
      ),
      'no per-request line for a hot answer',
    ).toEqual([]);
    expect(await svc.stop()).toBe(0);
    const lines = hotLines();
    expect(lines.length).toBeGreaterThan(0);
    const total: Record<string, number> = {};
    for (const l of lines) {
      expect(l).toMatchObject({ level: 30, route: '/image/:id' });
      expect(l.requests).toBe(
        Object.values(l.byStatus as Record<string, number>).reduce((a, b) => a + b, 0),
      );
      expect(l.durationMs.max).toBeGreaterThanOrEqual(l.durationMs.mean);
      for (const [k, n] of Object.entries(l.byStatus as Record<string, number>))
        total[k] = (total[k] ?? 0) + n;
    }
    expect(total).toEqual(hotAnswers);
  });
});
