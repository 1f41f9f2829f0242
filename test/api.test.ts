import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryHash } from '../src/domain/hash.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
import {
  expectNoSecret,
  getImage,
  getJson,
  kentikQuery,
  metric,
  postJson,
  requestImage,
  startService,
  type Service,
} from './support/index.ts';

const ID = /^[0-9a-f]{64}_\d+(\.\d+)?$/;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let sim: Simulator;
let svc: Service;

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  svc = await startService({ KENTIK_API_URL: sim.url, KENTIK_API_RETRIES: '0', MAX_TTL: '86400' });
});

afterAll(async () => {
  expect(await svc.stop()).toBe(0);
  expectNoSecret(svc.output);
  await sim.close();
});

describe('POST /requests', () => {
  it('answers at once with <sha256 of the canonical query>_<expiry>', async () => {
    const q = kentikQuery('id-shape');
    const before = Date.now() / 1000;
    const { status, json } = await postJson(`${svc.url}/requests`, { api_query: q, ttl: 120 });
    expect(status).toBe(200);
    expect(json.id).toMatch(ID);
    const [hash, expiry] = json.id.split('_');
    expect(hash).toBe(queryHash(q));
    expect(Number(expiry)).toBeGreaterThanOrEqual(before + 120);
    // Rounded up to a whole second at this ttl (see roundExpiry).
    expect(Number(expiry)).toBeLessThanOrEqual(Date.now() / 1000 + 121);
    // One log line for the request, naming the id it handed out and how.
    await svc.waitForLog(
      (l) => l.msg === 'request' && l.imageId === json.id && l.result === 'miss',
    );
  });

  it('uses DEFAULT_TTL (300 s) when ttl is left out', async () => {
    const id = await requestImage(svc.url, kentikQuery('default-ttl'));
    const expiry = Number(id.split('_')[1]);
    expect(expiry - Date.now() / 1000).toBeGreaterThan(295);
    expect(expiry - Date.now() / 1000).toBeLessThanOrEqual(300 + 300 / 64);
  });

  const bad: Array<[string, string | object, Record<string, string>, number, string]> = [
    ['no api_query', { ttl: 5 }, {}, 400, 'api_query is required'],
    ['null api_query', { api_query: null }, {}, 400, 'api_query must be a JSON object'],
    ['array api_query', { api_query: [1] }, {}, 400, 'api_query must be a JSON object'],
    ['string api_query', { api_query: 'q' }, {}, 400, 'api_query must be a JSON object'],
    ['fractional ttl', { api_query: {}, ttl: 1.5 }, {}, 400, 'ttl must be a whole number'],
    ['string ttl', { api_query: {}, ttl: '60' }, {}, 400, 'ttl must be a whole number'],
    ['zero ttl', { api_query: {}, ttl: 0 }, {}, 400, 'ttl must be a whole number'],
    ['negative ttl', { api_query: {}, ttl: -5 }, {}, 400, 'ttl must be a whole number'],
    ['ttl over MAX_TTL', { api_query: {}, ttl: 86401 }, {}, 400, 'from 1 to 86400'],
    ['body not an object', '[1,2]', {}, 400, 'must be a JSON object'],
    ['not JSON', '{"api_query": {', {}, 400, 'not valid JSON'],
    ['empty body', '', {}, 400, 'body is empty'],
    [
      'text/plain',
      '{"api_query": {}}',
      { 'content-type': 'text/plain' },
      415,
      'Content-Type: application/json',
    ],
    [
      'form',
      'a=1',
      { 'content-type': 'application/x-www-form-urlencoded' },
      415,
      'Content-Type: application/json',
    ],
    [
      'over MAX_QUERY_BYTES',
      { api_query: { pad: 'x'.repeat(64 * 1024) } },
      {},
      413,
      'MAX_QUERY_BYTES',
    ],
    [
      'too deep',
      { api_query: JSON.parse('{"a":'.repeat(100) + '1' + '}'.repeat(100)) },
      {},
      400,
      'nested deeper',
    ],
    ['__proto__ key', '{"api_query": {"__proto__": {"x": 1}}}', {}, 400, ''],
  ];
  it.each(bad)(
    'rejects %s with a clear 4xx JSON error',
    async (_name, body, headers, status, msg) => {
      const r = await postJson(`${svc.url}/requests`, body, headers);
      expect(r.status).toBe(status);
      expect(r.json).toEqual({
        type: expect.any(String),
        loc: expect.any(Array),
        msg: expect.stringContaining(msg),
      });
    },
  );

  it('loses nothing after bad input: the service still works', async () => {
    const id = await requestImage(svc.url, kentikQuery('after-bad'));
    expect((await getImage(svc.url, id)).status).toBe(200);
  });
});

describe('GET /image/{id}', () => {
  const types: Array<[string, string, (b: Buffer) => boolean]> = [
    ['png', 'image/png', (b) => b.subarray(0, 4).toString('latin1') === '\x89PNG'],
    ['jpeg', 'image/jpeg', (b) => b[0] === 0xff && b[1] === 0xd8],
    ['svg', 'image/svg+xml', (b) => b.toString('utf8').includes('<svg')],
    ['pdf', 'application/pdf', (b) => b.subarray(0, 5).toString('latin1') === '%PDF-'],
  ];
  it.each(types)(
    'serves %s with its content type, length and caching headers',
    async (imageType, mime, looksRight) => {
      const q = kentikQuery(`type-${imageType}`, imageType);
      const id = await requestImage(svc.url, q, 600);
      const r = await getImage(svc.url, id);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe(mime);
      expect(Number(r.headers.get('content-length'))).toBe(r.bytes.length);
      expect(looksRight(r.bytes)).toBe(true);
      // The bytes are exactly what the upstream produced for this query.
      expect(sim.stats().byHash[queryHash(q)]?.digests).toEqual([sha(r.bytes)]);
      expect(r.headers.get('etag')).toBe(`"${sha(r.bytes)}"`);
      const maxAge = Number(/max-age=(\d+)/.exec(r.headers.get('cache-control') ?? '')?.[1]);
      expect(r.headers.get('cache-control')).toMatch(/^public, max-age=\d+$/);
      expect(maxAge).toBeGreaterThan(590);
      // Expiries are rounded up by less than 1/64 of the ttl (see roundExpiry).
      expect(maxAge).toBeLessThanOrEqual(600 + 600 / 64);
      expect(Date.parse(r.headers.get('expires') ?? '')).toBeCloseTo(
        Number(id.split('_')[1]) * 1000,
        -4,
      );
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      if (mime === 'image/svg+xml') {
        expect(r.headers.get('content-security-policy')).toBe(
          "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        );
      } else {
        expect(r.headers.get('content-security-policy')).toBeNull();
      }
    },
  );

  it('answers If-None-Match with 304 and HEAD without a body', async () => {
    const id = await requestImage(svc.url, kentikQuery('etag'));
    const full = await getImage(svc.url, id);
    const etag = full.headers.get('etag')!;
    const cond = await getImage(svc.url, id, { headers: { 'if-none-match': etag } });
    expect(cond.status).toBe(304);
    expect(cond.bytes.length).toBe(0);
    expect(cond.headers.get('etag')).toBe(etag);
    const other = await getImage(svc.url, id, { headers: { 'if-none-match': '"nope"' } });
    expect(other.status).toBe(200);
    const head = await fetch(`${svc.url}/image/${id}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toBe('image/png');
    expect(Number(head.headers.get('content-length'))).toBe(full.bytes.length);
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it.each([
    ['unknown', `${'0'.repeat(64)}_${Math.floor(Date.now() / 1000) + 100}`],
    ['malformed', 'not-an-id'],
    ['traversal', '..%2F..%2Fetc%2Fpasswd'],
    ['encoded NUL', `${'0'.repeat(64)}_1%00`],
    ['too long', 'a'.repeat(500)],
    ['very long', `${'0'.repeat(64)}_${'1'.repeat(8000)}`],
  ])('answers 404 JSON for an %s id', async (_name, id) => {
    const r = await getImage(svc.url, id);
    expect(r.status).toBe(404);
    expect(r.json).toEqual({ type: 'Not found', loc: expect.any(Array), msg: expect.any(String) });
  });

  it('answers 404 once an id has expired', async () => {
    const id = await requestImage(svc.url, kentikQuery('expiring'), 1);
    expect((await getImage(svc.url, id)).status).toBe(200);
    const expiresAt = Number(id.split('_')[1]) * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now() + 20)));
    const r = await getImage(svc.url, id);
    expect(r.status).toBe(404);
    expect(r.json.msg).toContain('expired');
  });

  it("serves a stored Kentik error with Kentik's own status and message", async () => {
    const q = kentikQuery('bad-metric');
    (q.queries as Array<{ query: Record<string, unknown> }>)[0]!.query.metric = ['buckets'];
    const id = await requestImage(svc.url, q);
    const r = await getImage(svc.url, id);
    expect(r.status).toBe(400);
    expect(r.json.type).toBe('Kentik API error');
    expect(r.json.msg).toContain('buckets');
    expect(r.headers.get('cache-control')).toBe('no-store');
  });
});

describe('operations endpoints', () => {
  it('GET /info lists entries with the documented fields, and honours ?limit', async () => {
    await getImage(svc.url, await requestImage(svc.url, kentikQuery('info-1')));
    await getImage(svc.url, await requestImage(svc.url, kentikQuery('info-2')));
    const info = await getJson(`${svc.url}/info`);
    expect(info).toMatchObject({
      active_count: expect.any(Number),
      pending_count: expect.any(Number),
      active_entries: expect.any(Array),
      pending_entries: expect.any(Array),
    });
    expect(info.active_count).toBeGreaterThanOrEqual(2);
    for (const e of info.active_entries) {
      expect(e).toMatchObject({
        id: expect.stringMatching(ID),
        type: expect.stringMatching(/^(image|api_error)$/),
        size: expect.any(Number),
        expiration: expect.any(Number),
      });
    }
    const limited = await getJson(`${svc.url}/info?limit=1`);
    expect(limited.active_entries).toHaveLength(1);
    expect(limited.active_count).toBe(info.active_count);
    expect(limited.truncated).toBe(true);
    const badLimit = await fetch(`${svc.url}/info?limit=abc`);
    expect(badLimit.status).toBe(400);
  });

  it('GET /favicon.ico serves our icon', async () => {
    const r = await fetch(`${svc.url}/favicon.ico`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/x-icon');
    const b = Buffer.from(await r.arrayBuffer());
    expect(b.readUInt16LE(2)).toBe(1); // ICO type
    expect(b.readUInt16LE(4)).toBeGreaterThan(0);
  });

  it('GET /docs is interactive documentation and /openapi.json describes every endpoint', async () => {
    const docs = await fetch(`${svc.url}/docs`);
    expect(docs.status).toBe(200);
    expect(await docs.text()).toContain('swagger');
    const spec = await getJson(`${svc.url}/openapi.json`);
    expect(spec.openapi).toMatch(/^3\./);
    for (const p of ['/requests', '/image/{id}', '/info', '/healthz', '/readyz', '/metrics'])
      expect(spec.paths).toHaveProperty([p]);
    const post = spec.paths['/requests'].post;
    expect(Object.keys(post.responses)).toEqual(
      expect.arrayContaining(['200', '400', '413', '415']),
    );
    expect(post.requestBody.content['application/json'].schema.properties).toHaveProperty(
      'api_query',
    );
    expect(Object.keys(spec.paths['/image/{id}'].get.responses)).toEqual(
      expect.arrayContaining(['200', '304', '4XX', '502', '504', '507']),
    );
    expect(JSON.stringify(spec)).not.toContain('DO-NOT-LEAK');
  });

  it('GET /healthz and /readyz', async () => {
    expect(await getJson(`${svc.url}/healthz`)).toEqual({ status: 'ok' });
    const ready = await fetch(`${svc.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready' });
  });

  it('GET /metrics exposes requests, hits/misses, upstream calls and latency, entries, bytes, waiters', async () => {
    const text = await (await fetch(`${svc.url}/metrics`)).text();
    for (const name of [
      'kic_http_requests_total',
      'kic_cache_requests_total',
      'kic_image_lookups_total',
      'kic_upstream_attempts_total',
      'kic_upstream_attempt_duration_seconds_bucket',
      'kic_cache_entries',
      'kic_cache_bytes',
      'kic_waiters',
      'kic_cache_evictions_total',
    ]) {
      expect(text).toContain(name);
    }
    expect(await metric(svc.url, 'kic_upstream_attempts_total', { outcome: 'ok' })).toBeGreaterThan(
      0,
    );
    expect(await metric(svc.url, 'kic_cache_requests_total', { result: 'miss' })).toBeGreaterThan(
      0,
    );
    expect(text).not.toContain('DO-NOT-LEAK');
  });

  it('answers unknown routes with a JSON 404', async () => {
    const r = await fetch(`${svc.url}/nope`);
    expect(r.status).toBe(404);
    expect(await r.json()).toMatchObject({
      type: 'Not found',
      msg: expect.stringContaining('/docs'),
    });
  });
});
