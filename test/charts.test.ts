import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from '../src/domain/hash.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
import {
  chartImage,
  http,
  nextLog,
  putChart,
  refreshed,
  refreshFailed,
  svg,
} from './helpers/charts.ts';
import {
  expectNoSecret,
  getImage,
  getJson,
  kentikQuery,
  metric,
  removeDir,
  requestImage,
  startService,
  tempDir,
  type Service,
} from './helpers/service.ts';

let sim: Simulator;
let svc: Service;
const cachePath = tempDir('kic-charts-');
const calls = (q: unknown): number => sim.stats().byHash[queryHash(q)]?.calls ?? 0;

/** Short refreshes for the tests: CHART_MIN_REFRESH lowers the floor of 60 s. */
const env = (): Record<string, string> => ({
  KENTIK_API_URL: sim.url,
  KENTIK_API_RETRIES: '0',
  // Every refresh must reach the simulator: no reuse of an image fetched a moment ago.
  REUSE_WINDOW: '0',
  CHART_MIN_REFRESH: '1',
});

/** Waits (real time: what is being tested is time passing) until the chart's image has fallen due. */
async function untilDue(base: string, name: string): Promise<void> {
  const chart = await getJson(`${base}/charts/${name}`);
  expect(chart.due_at).not.toBeNull();
  const wait = Date.parse(chart.due_at) - Date.now() + 50;
  if (wait > 0) await sleep(wait);
}

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  svc = await startService(env(), { cachePath });
});
afterAll(async () => {
  await svc.stop();
  expectNoSecret(svc.output);
  await sim.close();
  removeDir(cachePath);
});
beforeEach(() => sim.reset());

describe('defining and serving a chart', () => {
  it('PUT creates (201) and replaces (200); GET shows definition and state', async () => {
    const q = kentikQuery('define');
    const created = await putChart(svc.url, 'define-me', { api_query: q, refresh: 120 });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({
      name: 'define-me',
      refresh: 120,
      image_url: '/charts/define-me/image',
      image: null,
      stale: true,
      last_error: null,
      failures: 0,
      api_query: q,
    });
    const replaced = await putChart(svc.url, 'define-me', { api_query: q });
    expect(replaced.status).toBe(200);
    expect(replaced.json.refresh).toBe(300); // the default
    expect(replaced.json.created_at).toBe(created.json.created_at);
    const got = await getJson(`${svc.url}/charts/define-me`);
    expect(got).toMatchObject({ name: 'define-me', refresh: 300, api_query: q });
    expect(calls(q)).toBe(0); // defining fetches nothing
  });

  it('serves the image with Content-Type, ETag, max-age until due; 304 on If-None-Match; HEAD', async () => {
    const q = kentikQuery('serve');
    await putChart(svc.url, 'serve', { api_query: q, refresh: 600 });
    const first = await chartImage(svc.url, 'serve'); // no image yet: waits for the first fetch
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toBe('image/png');
    expect(first.bytes.subarray(1, 4).toString()).toBe('PNG');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[0-9a-f]{64}"$/);
    const maxAge = Number(/max-age=(\d+)/.exec(first.headers.get('cache-control')!)![1]);
    expect(maxAge).toBeGreaterThan(590);
    expect(maxAge).toBeLessThanOrEqual(600);
    expect(first.headers.get('x-chart-stale')).toBeNull();
    expect(first.headers.get('age')).toBeNull();
    expect(first.headers.get('last-modified')).toBeTruthy();
    expect(first.headers.get('content-disposition')).toBe('inline; filename="serve.png"');

    const again = await chartImage(svc.url, 'serve', { 'if-none-match': etag });
    expect(again.status).toBe(304);
    expect(again.bytes.length).toBe(0);
    expect(again.headers.get('etag')).toBe(etag);

    const head = await http(`${svc.url}/charts/serve/image`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('etag')).toBe(etag);
    expect(head.headers.get('content-type')).toBe('image/png');
    expect(Number(head.headers.get('content-length'))).toBe(first.bytes.length);
    expect(calls(q)).toBe(1);

    const chart = await getJson(`${svc.url}/charts/serve`);
    expect(chart.image).toMatchObject({ etag, mime: 'image/png' });
    expect(chart.stale).toBe(false);
    // The chart's image is an ordinary cache id, served at /image/{id} too.
    expect((await getImage(svc.url, chart.image.id)).bytes.equals(first.bytes)).toBe(true);
  });

  it('serves SVG with the sandboxing CSP', async () => {
    await putChart(svc.url, 'svg-chart', { api_query: kentikQuery('svg', 'svg'), refresh: 600 });
    const r = await chartImage(svc.url, 'svg-chart');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/svg+xml');
    expect(r.headers.get('content-security-policy')).toContain('sandbox');
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('GET /charts pages by name with a next cursor', async () => {
    const q = kentikQuery('list');
    for (const n of ['list-c', 'list-a', 'list-b', 'list-d', 'list-e'])
      expect((await putChart(svc.url, n, { api_query: q, refresh: 600 })).status).toBe(201);
    const names: string[] = [];
    let after: string | null = 'list-';
    let pages = 0;
    while (after !== null) {
      const page = await getJson(`${svc.url}/charts?limit=2&after=${after}`);
      expect(page.limit).toBe(2);
      expect(page.total).toBeGreaterThanOrEqual(5);
      expect(page.charts.length).toBeLessThanOrEqual(2);
      for (const c of page.charts) {
        expect(c.api_query).toBeUndefined();
        expect(c.image_url).toBe(`/charts/${c.name}/image`);
      }
      names.push(...page.charts.map((c: { name: string }) => c.name));
      after = page.next;
      pages++;
    }
    const listed = names.filter((n) => n.startsWith('list-'));
    expect(listed).toEqual(['list-a', 'list-b', 'list-c', 'list-d', 'list-e']);
    expect(pages).toBeGreaterThanOrEqual(3);
  });

  it('DELETE removes the chart: 204, then 404 everywhere', async () => {
    await putChart(svc.url, 'doomed', { api_query: kentikQuery('doomed'), refresh: 600 });
    expect((await http(`${svc.url}/charts/doomed`, { method: 'DELETE' })).status).toBe(204);
    for (const r of [
      await http(`${svc.url}/charts/doomed`),
      await chartImage(svc.url, 'doomed'),
      await http(`${svc.url}/charts/doomed`, { method: 'DELETE' }),
    ]) {
      expect(r.status).toBe(404);
      expect(r.json).toMatchObject({ type: 'Not found', loc: ['path', 'name'] });
      expect(r.json.msg).toContain('PUT /charts/doomed');
    }
  });

  it('a chart whose query equals a POSTed one shares its fetch in flight and its bytes', async () => {
    const q = kentikQuery('shared-with-post');
    sim.setFaults({ latencyMs: 400 });
    const id = await requestImage(svc.url, q, 60);
    await putChart(svc.url, 'shared', { api_query: q, refresh: 600 });
    const [posted, chart] = await Promise.all([
      getImage(svc.url, id),
      chartImage(svc.url, 'shared'),
    ]);
    expect(chart.status).toBe(200);
    expect(chart.headers.get('etag')).toBe(posted.headers.get('etag'));
    expect(calls(q)).toBe(1);
    expect(
      await metric(svc.url, 'kic_chart_refreshes_total', { outcome: 'shared' }),
    ).toBeGreaterThan(0);
  });

  it('a longer-lived POSTed image is shared while fresh, but never keeps a chart from refreshing', async () => {
    const q = kentikQuery('long-post');
    const id = await requestImage(svc.url, q, 86_400);
    const posted = await getImage(svc.url, id);
    await putChart(svc.url, 'long-post', { api_query: q, refresh: 1 });
    const first = await chartImage(svc.url, 'long-post');
    expect(first.headers.get('etag')).toBe(posted.headers.get('etag'));
    expect((await getJson(`${svc.url}/charts/long-post`)).image.id).toBe(id); // rule 1: the POSTed id
    expect(calls(q)).toBe(1);

    await untilDue(svc.url, 'long-post');
    const done = nextLog(svc, refreshed('long-post'));
    await chartImage(svc.url, 'long-post');
    await done;
    // The POSTed id is still alive but its image is too old: the refresh fetched anew.
    expect(calls(q)).toBe(2);
    const chart = await getJson(`${svc.url}/charts/long-post`);
    expect(chart.image.id).not.toBe(id);
    expect(chart.stale).toBe(false);
  });
});

describe('refresh on demand', () => {
  it('a chart nobody requests makes no upstream call, however long it stays due', async () => {
    const q = kentikQuery('idle');
    await putChart(svc.url, 'idle', { api_query: q, refresh: 1 });
    expect((await chartImage(svc.url, 'idle')).status).toBe(200);
    expect(calls(q)).toBe(1);
    // Three refresh periods pass with nobody looking (a timer-driven refresh would call Kentik).
    await sleep(3200);
    expect((await getJson(`${svc.url}/charts/idle`)).stale).toBe(true);
    expect(calls(q)).toBe(1);
    // Looking at it again costs exactly one call.
    const done = nextLog(svc, refreshed('idle'));
    expect((await chartImage(svc.url, 'idle')).headers.get('x-chart-stale')).not.toBeNull();
    await done;
    expect(calls(q)).toBe(2);
  });

  it('a stale image is served at once and replaced after one background refresh', async () => {
    const q = kentikQuery('swr', 'svg');
    await putChart(svc.url, 'swr', { api_query: q, refresh: 1 });
    sim.script([{ kind: 'svg-raw', svg: svg('v1') }]);
    const v1 = await chartImage(svc.url, 'swr');
    expect(v1.bytes.toString()).toBe(svg('v1'));
    await untilDue(svc.url, 'swr');

    // The refresh takes long; the stale image is answered while it runs.
    sim.setFaults({ latencyMs: 1500 });
    sim.script([{ kind: 'svg-raw', svg: svg('v2') }]);
    const done = nextLog(svc, refreshed('swr', 'fetched'));
    const refreshesBefore = svc.logs().filter(refreshed('swr')).length;
    const stale = await chartImage(svc.url, 'swr');
    expect(stale.status).toBe(200);
    expect(stale.bytes.toString()).toBe(svg('v1'));
    // Answered before the refresh (1.5 s of Kentik latency) finished.
    expect(svc.logs().filter(refreshed('swr')).length).toBe(refreshesBefore);
    expect(Number(stale.headers.get('x-chart-stale'))).toBeGreaterThanOrEqual(1);
    expect(stale.headers.get('warning')).toContain('110');
    expect(stale.headers.get('cache-control')).toBe('public, max-age=0');

    await done;
    const v2 = await chartImage(svc.url, 'swr');
    expect(v2.bytes.toString()).toBe(svg('v2'));
    expect(v2.headers.get('etag')).not.toBe(v1.headers.get('etag'));
    expect(v2.headers.get('x-chart-stale')).toBeNull();
    expect(calls(q)).toBe(2);
    expect(
      await metric(svc.url, 'kic_chart_stale_serves_total', { reason: 'revalidating' }),
    ).toBeGreaterThan(0);
  });

  it('concurrent requests on a stale chart cause one refresh', async () => {
    const q = kentikQuery('herd');
    await putChart(svc.url, 'herd', { api_query: q, refresh: 1 });
    const first = await chartImage(svc.url, 'herd');
    await untilDue(svc.url, 'herd');
    sim.setFaults({ latencyMs: 500 });
    const fetchedBefore = await metric(svc.url, 'kic_chart_refreshes_total', {
      outcome: 'fetched',
    });
    const done = nextLog(svc, refreshed('herd'));
    const answers = await Promise.all(
      Array.from({ length: 30 }, () => chartImage(svc.url, 'herd')),
    );
    for (const a of answers) {
      expect(a.status).toBe(200);
      expect(a.headers.get('etag')).toBe(first.headers.get('etag'));
    }
    await done;
    expect(calls(q)).toBe(2);
    expect(await metric(svc.url, 'kic_chart_refreshes_total', { outcome: 'fetched' })).toBe(
      fetchedBefore + 1,
    );
  });

  it('the first requests of a new chart share one fetch and all get the image', async () => {
    const q = kentikQuery('first-herd');
    await putChart(svc.url, 'first-herd', { api_query: q, refresh: 600 });
    sim.setFaults({ latencyMs: 400 });
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => chartImage(svc.url, 'first-herd')),
    );
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(new Set(answers.map((a) => a.headers.get('etag'))).size).toBe(1);
    expect(calls(q)).toBe(1);
  });
});

describe('stale-if-error and backoff', () => {
  it('a failing refresh keeps serving the last good image, says so, and backs off', async () => {
    const q = kentikQuery('sie', 'svg');
    await putChart(svc.url, 'sie', { api_query: q, refresh: 2 });
    sim.script([{ kind: 'svg-raw', svg: svg('good') }]);
    const good = await chartImage(svc.url, 'sie');
    expect(good.bytes.toString()).toBe(svg('good'));
    await untilDue(svc.url, 'sie');

    sim.script([{ kind: 'status', status: 500, message: 'kentik is down' }]);
    const failed = nextLog(svc, refreshFailed('sie'));
    expect((await chartImage(svc.url, 'sie')).bytes.toString()).toBe(svg('good'));
    await failed;

    const r = await chartImage(svc.url, 'sie');
    expect(r.status).toBe(200);
    expect(r.bytes.toString()).toBe(svg('good'));
    expect(Number(r.headers.get('x-chart-stale'))).toBeGreaterThanOrEqual(2);
    expect(r.headers.get('x-chart-error')).toBe('500 Kentik API error');
    expect(r.headers.get('warning')).toContain('111');
    expect(
      await metric(svc.url, 'kic_chart_stale_serves_total', { reason: 'error' }),
    ).toBeGreaterThan(0);

    const state = await getJson(`${svc.url}/charts/sie`);
    expect(state.failures).toBe(1);
    expect(state.last_error).toMatchObject({ status: 500, type: 'Kentik API error' });
    expect(state.last_error.msg).toContain('kentik is down');
    const firstDelay = Date.parse(state.retry_at) - Date.parse(state.last_attempt_at);
    expect(firstDelay).toBe(2000); // one refresh period
    // The max-age of a failing chart points at its next retry, not at zero.
    expect(r.headers.get('cache-control')).toMatch(/max-age=[12]$/);

    // The retry fails again: the delay doubles.
    await sleep(Date.parse(state.retry_at) - Date.now() + 50);
    sim.script([{ kind: 'status', status: 503 }]);
    const failedAgain = nextLog(svc, refreshFailed('sie'));
    await chartImage(svc.url, 'sie');
    await failedAgain;
    const state2 = await getJson(`${svc.url}/charts/sie`);
    expect(state2.failures).toBe(2);
    expect(Date.parse(state2.retry_at) - Date.parse(state2.last_attempt_at)).toBe(4000);
    expect(calls(q)).toBe(3);

    // Recovery clears the error.
    await sleep(Date.parse(state2.retry_at) - Date.now() + 50);
    sim.script([{ kind: 'svg-raw', svg: svg('recovered') }]);
    const ok = nextLog(svc, refreshed('sie'));
    await chartImage(svc.url, 'sie');
    await ok;
    const fresh = await chartImage(svc.url, 'sie');
    expect(fresh.bytes.toString()).toBe(svg('recovered'));
    expect(fresh.headers.get('x-chart-error')).toBeNull();
    const state3 = await getJson(`${svc.url}/charts/sie`);
    expect(state3).toMatchObject({ failures: 0, last_error: null, retry_at: null });
  });

  it('with no good image the error is served like GET /image/{id}, then without calling Kentik until the retry', async () => {
    const q = kentikQuery('never-good');
    await putChart(svc.url, 'never-good', { api_query: q, refresh: 600 });
    sim.script([{ kind: 'status', status: 403, message: 'no access to this device' }]);
    const r = await chartImage(svc.url, 'never-good');
    expect(r.status).toBe(403);
    expect(r.json).toMatchObject({ type: 'Kentik API error', loc: ['upstream'] });
    expect(r.json.msg).toContain('no access to this device');
    expect(r.headers.get('cache-control')).toBe('no-store');

    const again = await chartImage(svc.url, 'never-good');
    expect(again.status).toBe(403);
    const retryAfter = Number(again.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(590);
    expect(retryAfter).toBeLessThanOrEqual(600);
    expect(calls(q)).toBe(1);

    // Replacing the definition starts over at once.
    await putChart(svc.url, 'never-good', { api_query: q, refresh: 600 });
    expect((await chartImage(svc.url, 'never-good')).status).toBe(200);
    expect(calls(q)).toBe(2);
  });
});

describe('persistence', () => {
  it('charts and their images survive a restart', async () => {
    const q = kentikQuery('persist');
    await putChart(svc.url, 'persist', { api_query: q, refresh: 600 });
    await putChart(svc.url, 'persist-unseen', { api_query: kentikQuery('unseen'), refresh: 900 });
    const before = await chartImage(svc.url, 'persist');
    await svc.stop();
    svc = await startService(env(), { cachePath });
    const list = await getJson(`${svc.url}/charts?limit=1000`);
    const names = list.charts.map((c: { name: string }) => c.name);
    expect(names).toContain('persist');
    expect(names).toContain('persist-unseen');
    expect((await getJson(`${svc.url}/charts/persist-unseen`)).refresh).toBe(900);
    const after = await chartImage(svc.url, 'persist');
    expect(after.status).toBe(200);
    expect(after.headers.get('etag')).toBe(before.headers.get('etag'));
    expect(calls(q)).toBe(1); // served from the cache, not fetched again
  });

  it('a failing chart keeps backing off across a restart', async () => {
    const q = kentikQuery('persist-failing');
    await putChart(svc.url, 'persist-failing', { api_query: q, refresh: 600 });
    sim.script([{ kind: 'status', status: 400, message: 'unknown dimension' }]);
    expect((await chartImage(svc.url, 'persist-failing')).status).toBe(400);
    await svc.stop();
    svc = await startService(env(), { cachePath });
    const r = await chartImage(svc.url, 'persist-failing');
    expect(r.status).toBe(400);
    expect(r.json.msg).toContain('unknown dimension');
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(500);
    expect(calls(q)).toBe(1);
    expect((await getJson(`${svc.url}/charts/persist-failing`)).failures).toBe(1);
  });

  it('survives kill -9 right after a PUT answered', async () => {
    const q = kentikQuery('crash');
    expect((await putChart(svc.url, 'crash', { api_query: q, refresh: 777 })).status).toBe(201);
    await svc.stop('SIGKILL');
    svc = await startService(env(), { cachePath });
    expect((await getJson(`${svc.url}/charts/crash`)).refresh).toBe(777);
    expect(await metric(svc.url, 'kic_charts_defined')).toBeGreaterThan(0);
  });
});
