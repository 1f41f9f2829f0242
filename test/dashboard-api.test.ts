// The JSON and event-stream endpoints behind the dashboard, and the fields /info gained for it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { chartImage, putChart } from './helpers/charts.ts';
import {
  getImage,
  getJson,
  kentikQuery,
  requestImage,
  startService,
  type Service,
} from './helpers/service.ts';

let sim: Simulator;
let svc: Service;
beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  svc = await startService({
    KENTIK_API_URL: sim.url,
    KENTIK_API_RETRIES: '0',
    DEFAULT_TTL: '900',
  });
});
afterAll(async () => {
  await svc.stop();
  await sim.close();
});

const badQuery = () => {
  const q = kentikQuery('api-bad');
  (q.queries as Array<{ query: Record<string, unknown> }>)[0]!.query.metric = ['buckets'];
  return q;
};

/** Reads a text/event-stream into parsed events until `until` says stop. */
async function readEvents(
  res: Response,
  until: (events: Array<{ event: string; data: any }>) => boolean,
): Promise<Array<{ event: string; data: any }>> {
  const events: Array<{ event: string; data: any }> = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  while (!until(events)) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let end: number;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const event = /^event: (.*)$/m.exec(frame)?.[1];
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (event && data) events.push({ event, data: JSON.parse(data) });
    }
  }
  await reader.cancel();
  return events;
}

describe('/info', () => {
  it('keeps every field and adds created, query_summary, served, shares and error', async () => {
    const before = Date.now() / 1000;
    const q = kentikQuery('info-ext', 'svg');
    const id = await requestImage(svc.url, q, 60);
    await getImage(svc.url, id);
    await getImage(svc.url, id);
    // Same query, longer ttl: a second id that shares the image.
    const id2 = await requestImage(svc.url, q, 120);
    const bad = await requestImage(svc.url, badQuery());
    await getImage(svc.url, bad);
    const info = await getJson(`${svc.url}/info`);
    const entry = info.active_entries.find((e: any) => e.id === id);
    expect(entry).toMatchObject({
      id,
      type: 'image',
      mime: 'image/svg+xml',
      size: expect.any(Number),
      expiration: Number(id.split('_')[1]),
      served: 2,
      shares: 2,
      query_summary: {
        title: 'test query info-ext',
        metrics: ['bytes'],
        dimensions: ['AS_src'],
        time: 'last 1 h',
        devices: 'all devices',
        image_type: 'svg',
        text: 'test query info-ext · bytes by AS_src · last 1 h · all devices · SVG',
      },
    });
    expect(entry.created).toBeGreaterThanOrEqual(before - 1);
    expect(entry.created).toBeLessThanOrEqual(Date.now() / 1000);
    expect(info.active_entries.find((e: any) => e.id === id2)).toMatchObject({
      served: 0,
      shares: 2,
    });
    const failed = info.active_entries.find((e: any) => e.id === bad);
    expect(failed).toMatchObject({
      type: 'api_error',
      status: 400,
      error: {
        status: 400,
        type: 'Kentik API error',
        message: expect.stringContaining("Invalid metric 'buckets'"),
      },
    });
    expect(failed.size).toBe(Buffer.byteLength(failed.error.message));
  });
});

describe('/dashboard/api', () => {
  it('pages newest first with a cursor that neither skips nor repeats, and filters', async () => {
    const mine: string[] = [];
    for (let i = 0; i < 5; i++)
      mine.push(await requestImage(svc.url, kentikQuery(`page-${i}`, i === 4 ? 'pdf' : 'png')));
    for (const id of mine) await getImage(svc.url, id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let total: number;
    do {
      const page: any = await getJson(
        `${svc.url}/dashboard/api/entries?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      expect(page.entries.length).toBeLessThanOrEqual(2);
      total = page.matched;
      seen.push(...page.entries.map((e: any) => e.id));
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen).toHaveLength(total);
    expect(new Set(seen).size).toBe(seen.length);
    // Newest first: my five, in reverse order of creation, in that relative order.
    const order = mine.map((id) => seen.indexOf(id));
    expect(order.every((p) => p >= 0)).toBe(true);
    expect([...order].sort((a, b) => b - a)).toEqual(order);

    const byText = await getJson(
      `${svc.url}/dashboard/api/entries?q=${encodeURIComponent('QUERY page-3')}`,
    );
    expect(byText.entries.map((e: any) => e.id)).toEqual([mine[3]]);
    const pdfs = await getJson(`${svc.url}/dashboard/api/entries?image_type=pdf&q=page-`);
    expect(pdfs.entries.map((e: any) => e.id)).toEqual([mine[4]]);
    const failed = await getJson(`${svc.url}/dashboard/api/entries?state=failed`);
    expect(failed.entries.every((e: any) => e.type === 'api_error')).toBe(true);
    expect(failed.matched).toBe(failed.entries.length);
  });

  it.each([
    ['limit=0', 'limit must be from 1 to 200'],
    ['limit=abc', 'limit'],
    ['state=broken', 'state'],
    ['cursor=123~abc', 'cursor is not one this service handed out'],
    ['cursor=' + 'x'.repeat(300), 'cursor is not one this service handed out'],
  ])('answers 400 for %s', async (query, msg) => {
    const res = await fetch(`${svc.url}/dashboard/api/entries?${query}`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { msg: string }).msg).toContain(msg);
  });

  it('reports status: entries by state, bytes, hit/shared/miss, upstream, backend, ttl', async () => {
    const s = await getJson(`${svc.url}/dashboard/api/status`);
    const info = await getJson(`${svc.url}/info`);
    expect(s.entries.pending).toBe(info.pending_count);
    expect(s.entries.ready + s.entries.failed).toBe(info.active_count);
    expect(s.stored_bytes).toBe(info.stored_bytes);
    expect(s.requests.miss).toBeGreaterThan(0);
    expect(s.requests.shared).toBeGreaterThan(0);
    expect(s.upstream).toMatchObject({
      minutes: 15,
      calls: expect.any(Number),
      errors: expect.any(Number),
    });
    expect(s.upstream.errors).toBeGreaterThan(0);
    expect(s.upstream.last_error).toMatchObject({
      status: 400,
      message: expect.stringContaining('buckets'),
    });
    expect(s).toMatchObject({
      backend: 'filesystem',
      default_ttl: 900,
      max_ttl: 604800,
      charts: { defined: 0 },
    });
  });

  it('lists the shipped example requests', async () => {
    const { examples } = await getJson(`${svc.url}/dashboard/api/examples`);
    expect(examples.length).toBe(13);
    expect(examples[0]).toMatchObject({
      name: '01-total-traffic-png.json',
      body: { api_query: expect.any(Object) },
    });
    expect(examples.every((e: any) => !('expect_status' in e.body))).toBe(true);
  });

  it('pushes status, created and settled over Server-Sent Events', async () => {
    const res = await fetch(`${svc.url}/dashboard/api/events`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    let id = '';
    const events = readEvents(res, (ev) =>
      ev.some((e) => e.event === 'settled' && e.data.entries.some((x: any) => x.id === id)),
    );
    // fetch resolved with the headers: the stream is registered, so nothing is missed from here.
    id = await requestImage(svc.url, kentikQuery('sse'));
    const got = await events;
    expect(got[0]!.event).toBe('status');
    expect(got.find((e) => e.event === 'created')?.data).toEqual({ id });
    const settled = got
      .find((e) => e.event === 'settled')!
      .data.entries.find((x: any) => x.id === id);
    expect(settled).toMatchObject({
      id,
      type: 'image',
      mime: 'image/png',
      query_summary: { title: 'test query sse' },
    });
  });

  it('documents its endpoints and the new /info fields in /openapi.json', async () => {
    const doc = await getJson(`${svc.url}/openapi.json`);
    for (const p of [
      '/',
      '/dashboard/api/entries',
      '/dashboard/api/status',
      '/dashboard/api/examples',
      '/dashboard/api/events',
      '/dashboard/api/charts',
    ])
      expect(doc.paths[p]?.get, p).toBeDefined();
    const entry =
      doc.paths['/info'].get.responses['200'].content['application/json'].schema.properties
        .active_entries.items;
    for (const field of [
      'id',
      'type',
      'size',
      'expiration',
      'mime',
      'status',
      'created',
      'query_summary',
      'served',
      'shares',
      'error',
    ])
      expect(Object.keys(entry.properties)).toContain(field);
  });

  it('lists named charts, paged by name, with their query in words, image time and failures', async () => {
    const other = await startService({ KENTIK_API_URL: sim.url, KENTIK_API_RETRIES: '0' });
    try {
      expect(
        (await putChart(other.url, 'b-core', { api_query: kentikQuery('chart-b') })).status,
      ).toBe(201);
      expect(
        (await putChart(other.url, 'a-bad', { api_query: badQuery(), refresh: 600 })).status,
      ).toBe(201);
      expect(
        (await putChart(other.url, 'c-new', { api_query: kentikQuery('chart-c', 'pdf') })).status,
      ).toBe(201);
      expect((await getJson(`${other.url}/dashboard/api/status`)).charts).toEqual({ defined: 3 });
      const before = Date.now() / 1000;
      expect((await chartImage(other.url, 'b-core')).status).toBe(200);
      expect((await chartImage(other.url, 'a-bad')).status).toBe(400);

      const first = await getJson(`${other.url}/dashboard/api/charts?limit=2`);
      expect(first.total).toBe(3);
      expect(first.next).toBe('b-core');
      expect(first.charts.map((c: any) => c.name)).toEqual(['a-bad', 'b-core']);
      const [bad, core] = first.charts;
      expect(core).toMatchObject({
        image_url: '/charts/b-core/image',
        refresh: 300,
        health: 'fresh',
        image: { mime: 'image/png' },
        last_error: null,
        failures: 0,
        query_summary: { title: 'test query chart-b', image_type: 'png' },
      });
      expect(core.query_summary.text).toContain('test query chart-b');
      expect(core.image.fetched_at).toBeGreaterThanOrEqual(Math.floor(before) - 1);
      expect(core.due_at).toBeCloseTo(core.image.fetched_at + 300, 3);
      expect(bad).toMatchObject({
        health: 'failing',
        image: null,
        refresh: 600,
        failures: 1,
        last_error: { status: 400, message: expect.stringContaining('buckets') },
      });
      expect(bad.retry_at).toBeGreaterThan(bad.last_error.at);

      const rest = await getJson(`${other.url}/dashboard/api/charts?limit=2&after=${first.next}`);
      expect(rest).toMatchObject({ total: 3, next: null });
      expect(rest.charts).toEqual([
        expect.objectContaining({
          name: 'c-new',
          health: 'waiting',
          image: null,
          query_summary: expect.objectContaining({ image_type: 'pdf' }),
        }),
      ]);
    } finally {
      await other.stop();
    }
  });

  it.each([
    ['limit=0', 'limit must be a whole number of charts from 1 to 100'],
    ['limit=101', 'limit must be a whole number of charts from 1 to 100'],
    ['limit=ten', 'limit must be a whole number of charts from 1 to 100'],
    ['after=..', 'after must be a chart name'],
    ['after=a%2Fb', 'after must be a chart name'],
  ])('answers 400 for /dashboard/api/charts?%s', async (query, msg) => {
    const res = await fetch(`${svc.url}/dashboard/api/charts?${query}`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { msg: string }).msg).toContain(msg);
  });

  it('ends open event streams at shutdown, so stopping does not wait for them', async () => {
    const other = await startService({ KENTIK_API_URL: sim.url });
    const res = await fetch(`${other.url}/dashboard/api/events`);
    const ended = readEvents(res, () => false);
    const started = Date.now();
    expect(await other.stop()).toBe(0);
    await ended; // the stream ended instead of hanging
    // The shutdown grace period is 10 s; an open stream must not use it up.
    expect(Date.now() - started).toBeLessThan(8000);
  });
});
