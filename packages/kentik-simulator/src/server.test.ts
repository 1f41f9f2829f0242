import { createHash } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from './hash.ts';
import { sampleRequest } from './fixtures.ts';
import { type Simulator, startSimulator } from './index.ts';

const EMAIL = 'sim-test@example.com';
const TOKEN = 'tok-3f9a7c-NEVER-ECHO-ME';
const AUTH = { 'X-CH-Auth-Email': EMAIL, 'X-CH-Auth-API-Token': TOKEN };

/** A quick chart (one series) over a fixed window: its bytes do not depend on the clock. */
const FIXED = sampleRequest({
  dimension: ['Traffic'],
  lookback_seconds: 0,
  starting_time: '2025-01-15 00:00:00',
  ending_time: '2025-01-15 01:00:00',
});

const STRICT_DATA_URI =
  /^data:(image\/png|image\/jpeg|image\/svg\+xml|application\/pdf);base64,([A-Za-z0-9+/]+={0,2})$/;

let sim: Simulator;

async function post(
  body: unknown,
  headers: Record<string, string> = AUTH,
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(`${sim.url}/query/topXchart`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

async function image(res: Response): Promise<{ mime: string; bytes: Buffer }> {
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const { dataUri } = (await res.json()) as { dataUri: string };
  const m = STRICT_DATA_URI.exec(dataUri);
  expect(m, dataUri.slice(0, 60)).not.toBeNull();
  return { mime: m?.[1] ?? '', bytes: Buffer.from(m?.[2] ?? '', 'base64') };
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Reverse the key order of every object, deeply. */
function reversed(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reversed);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v)
        .reverse()
        .map(([k, x]) => [k, reversed(x)]),
    );
  }
  return v;
}

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  sim = await startSimulator({ email: EMAIL, token: TOKEN });
});
afterAll(async () => {
  await sim.close();
});
beforeEach(() => sim.reset());

describe('authentication', () => {
  it('401 without headers, 403 with wrong values; never echoes the token', async () => {
    const cases: Array<[Record<string, string>, number]> = [
      [{}, 401],
      [{ 'X-CH-Auth-Email': EMAIL }, 401],
      [{ 'X-CH-Auth-API-Token': TOKEN }, 401],
      [{ 'X-CH-Auth-Email': EMAIL, 'X-CH-Auth-API-Token': 'wrong' }, 403],
      [{ 'X-CH-Auth-Email': 'other@example.com', 'X-CH-Auth-API-Token': TOKEN }, 403],
      // Headers swapped: the token arrives as the e-mail and must not come back.
      [{ 'X-CH-Auth-Email': TOKEN, 'X-CH-Auth-API-Token': EMAIL }, 403],
      [{ 'X-CH-Auth-Email': EMAIL, 'X-CH-Auth-API-Token': `${TOKEN}x` }, 403],
    ];
    for (const [headers, status] of cases) {
      const res = await post(sampleRequest(), headers);
      const text = await res.text();
      expect(res.status, JSON.stringify(headers)).toBe(status);
      expect(JSON.parse(text)).toHaveProperty('error');
      expect(text).not.toContain(TOKEN);
    }
    expect(sim.stats().total).toBe(cases.length);
    expect(sim.stats().byStatus).toEqual({ '401': 3, '403': 4 });
  });

  it('accepts the e-mail case-insensitively and still renders', async () => {
    const res = await post(FIXED, { ...AUTH, 'X-CH-Auth-Email': EMAIL.toUpperCase() });
    expect((await image(res)).mime).toBe('image/png');
  });

  it('checks auth before scripted outcomes (the script is not consumed)', async () => {
    sim.script([{ kind: 'status', status: 503 }]);
    expect((await post(FIXED, {})).status).toBe(401);
    expect((await post(FIXED)).status).toBe(503);
  });
});

describe('validation', () => {
  const bad: Array<[string, unknown, string]> = [
    ['unknown metric', sampleRequest({ metric: ['buckets'] }), 'queries[0].query.metric'],
    ['bad imageType', sampleRequest({}, { imageType: 'gif' }), 'imageType'],
    ['empty queries', { queries: [], imageType: 'png' }, 'queries'],
    ['bad viz_type', sampleRequest({ viz_type: 'radar' }), 'queries[0].query.viz_type'],
    ['topx 0', sampleRequest({ topx: 0 }), 'queries[0].query.topx'],
    ['topx 41', sampleRequest({ topx: 41 }), 'queries[0].query.topx'],
    ['topx 2.5', sampleRequest({ topx: 2.5 }), 'queries[0].query.topx'],
    [
      'unknown dimension',
      sampleRequest({ dimension: ['Planet_src'] }),
      'queries[0].query.dimension',
    ],
  ];
  for (const [name, body, field] of bad) {
    it(`400 naming the field: ${name}`, async () => {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      const text = await res.text();
      expect(text.length).toBeLessThan(400);
      const { error } = JSON.parse(text) as { error: string };
      expect(error).toContain(field);
    });
  }

  it("names the unknown metric 'buckets' and the valid ones", async () => {
    const { error } = (await (await post(sampleRequest({ metric: ['buckets'] }))).json()) as {
      error: string;
    };
    expect(error).toMatch(
      /^Invalid metric 'buckets' in queries\[0\]\.query\.metric; expected one of bytes, /,
    );
  });

  it('400 for a body that is not JSON, or empty', async () => {
    for (const body of ['{"queries": [', 'hello', '']) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(await res.json()).toHaveProperty('error');
    }
    expect(sim.stats().byStatus['400']).toBe(3);
  });

  it('413 for a body over 1 MiB', async () => {
    const res = await post(`{"pad": "${'x'.repeat(1024 * 1024)}"}`);
    expect(res.status).toBe(413);
    expect(await res.json()).toHaveProperty('error');
    expect(sim.stats().total).toBe(1);
  });
});

describe('images', () => {
  const magic: Array<[string, string, (b: Buffer) => boolean]> = [
    [
      'png',
      'image/png',
      (b) => b.subarray(0, 8).equals(Buffer.from('\x89PNG\r\n\x1a\n', 'latin1')),
    ],
    ['jpeg', 'image/jpeg', (b) => b.subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff]))],
    ['jpg', 'image/jpeg', (b) => b.subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff]))],
    [
      'svg',
      'image/svg+xml',
      (b) => /<svg[\s>]/.test(b.toString('utf8')) && b.toString('utf8').includes('<path'),
    ],
    ['pdf', 'application/pdf', (b) => b.subarray(0, 5).toString('latin1') === '%PDF-'],
  ];
  for (const [imageType, mime, ok] of magic) {
    it(`imageType ${imageType} gives ${mime}`, async () => {
      const img = await image(await post(sampleRequest({}, { imageType })));
      expect(img.mime).toBe(mime);
      expect(ok(img.bytes)).toBe(true);
    });
  }

  it('PNG charts have a realistic size', async () => {
    const { bytes } = await image(await post(sampleRequest()));
    expect(bytes.length).toBeGreaterThan(20_000);
    expect(bytes.length).toBeLessThan(400_000);
  });

  it('records the digest of each served image; same query and window, same bytes', async () => {
    const a = await image(await post(FIXED));
    const b = await image(await post(FIXED));
    expect(a.bytes.equals(b.bytes)).toBe(true);
    const entry = sim.stats().byHash[queryHash(FIXED)];
    expect(entry).toEqual({ calls: 2, digests: [sha(a.bytes), sha(a.bytes)] });
  });

  it('byHash does not depend on key order', async () => {
    await image(await post(FIXED));
    await image(await post(JSON.stringify(reversed(FIXED))));
    const stats = sim.stats();
    expect(Object.keys(stats.byHash)).toEqual([queryHash(FIXED)]);
    expect(stats.byHash[queryHash(FIXED)]?.calls).toBe(2);
    expect(new Set(stats.byHash[queryHash(FIXED)]?.digests).size).toBe(1);
  });
});

describe('scripted outcomes', () => {
  it('status, with message and Retry-After, in order, then normal again', async () => {
    sim.script([
      { kind: 'status', status: 503, message: 'maintenance' },
      { kind: 'status', status: 429, retryAfter: '7' },
      { kind: 'status', status: 500 },
    ]);
    const r1 = await post(FIXED);
    expect(r1.status).toBe(503);
    expect(await r1.json()).toEqual({ error: 'maintenance' });
    const r2 = await post(FIXED);
    expect(r2.status).toBe(429);
    expect(r2.headers.get('retry-after')).toBe('7');
    await r2.body?.cancel();
    const r3 = await post(FIXED);
    expect(r3.status).toBe(500);
    expect(r3.headers.get('retry-after')).toBeNull();
    await r3.body?.cancel();
    await image(await post(FIXED));
    expect(sim.stats().byStatus).toEqual({ '503': 1, '429': 1, '500': 1, '200': 1 });
  });

  it('ok wins over an error rate of 1; scripted outcomes come before rates', async () => {
    sim.setFaults({ errorRates: { 503: 1 } });
    sim.script([{ kind: 'ok' }]);
    await image(await post(FIXED));
    expect((await post(FIXED)).status).toBe(503);
  });

  it('ok still validates: a bad query gets 400', async () => {
    sim.script([{ kind: 'ok' }]);
    expect((await post(sampleRequest({ metric: 'buckets' }))).status).toBe(400);
  });

  it('hang: no answer until the client gives up', async () => {
    sim.script([{ kind: 'hang' }]);
    const started = Date.now();
    await expect(post(FIXED, AUTH, AbortSignal.timeout(300))).rejects.toThrow();
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(sim.stats().byStatus).toEqual({ hang: 1 });
    await image(await post(FIXED));
  });

  it('reset: the connection drops without a response', async () => {
    sim.script([{ kind: 'reset' }]);
    await expect(post(FIXED)).rejects.toThrow();
    expect(sim.stats().byStatus).toEqual({ reset: 1 });
    await image(await post(FIXED));
  });

  it('malformed-json: 200 whose body does not parse, several variants', async () => {
    sim.script(Array.from({ length: 4 }, () => ({ kind: 'malformed-json' as const })));
    const bodies = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const res = await post(FIXED);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      const text = await res.text();
      expect(() => JSON.parse(text) as unknown).toThrow();
      bodies.add(text);
    }
    expect(bodies.size).toBe(4);
    expect(sim.stats().byStatus).toEqual({ 'malformed-json': 4 });
  });

  it('malformed-data-uri: 200 JSON whose dataUri is not a valid base64 image data URI', async () => {
    sim.script(Array.from({ length: 4 }, () => ({ kind: 'malformed-data-uri' as const })));
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const res = await post(FIXED);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { dataUri: unknown };
      expect(body).toHaveProperty('dataUri');
      const uri = body.dataUri;
      expect(typeof uri === 'string' && STRICT_DATA_URI.test(uri)).toBe(false);
      seen.add(JSON.stringify(uri));
    }
    expect(seen.size).toBe(4);
    expect(sim.stats().byHash[queryHash(FIXED)]).toEqual({ calls: 4, digests: [] });
  });

  it('svg-raw: serves the given SVG byte for byte as image/svg+xml', async () => {
    const svg =
      '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><rect width="1" height="1"/></svg>';
    sim.script([{ kind: 'svg-raw', svg }]);
    const img = await image(await post(FIXED));
    expect(img.mime).toBe('image/svg+xml');
    expect(img.bytes.toString('utf8')).toBe(svg);
    expect(sim.stats().byHash[queryHash(FIXED)]?.digests).toEqual([sha(Buffer.from(svg))]);
  });

  it('rejects invalid outcomes', () => {
    expect(() => sim.script([{ kind: 'explode' } as never])).toThrow(/kind/);
  });
});

describe('fault rates', () => {
  it('errorRates {503: 1} -> always 503 with a JSON error', async () => {
    sim.setFaults({ errorRates: { 503: 1 } });
    for (let i = 0; i < 3; i++) {
      const res = await post(FIXED);
      expect(res.status).toBe(503);
      expect(await res.json()).toHaveProperty('error');
    }
  });

  it('errorRates {429: 1} -> 429 with Retry-After from the config', async () => {
    sim.setFaults({ errorRates: { 429: 1 }, retryAfter: 'Wed, 21 Oct 2037 07:28:00 GMT' });
    const res = await post(FIXED);
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('Wed, 21 Oct 2037 07:28:00 GMT');
    await res.body?.cancel();
  });

  it('502 and 504 come as the HTML pages of a load balancer', async () => {
    for (const status of [502, 504] as const) {
      sim.setFaults({ errorRates: { 502: 0, 504: 0, [status]: 1 } });
      const res = await post(FIXED);
      expect(res.status).toBe(status);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await res.text()).toContain(`<title>${status}`);
    }
  });

  it('hangRate, resetRate, malformed rates at 1', async () => {
    sim.setFaults({ hangRate: 1 });
    await expect(post(FIXED, AUTH, AbortSignal.timeout(200))).rejects.toThrow();
    sim.reset();
    sim.setFaults({ resetRate: 1 });
    await expect(post(FIXED)).rejects.toThrow();
    sim.reset();
    sim.setFaults({ malformedJsonRate: 1 });
    const r1 = await post(FIXED);
    expect(r1.status).toBe(200);
    await expect(r1.json()).rejects.toThrow();
    sim.reset();
    sim.setFaults({ malformedDataUriRate: 1 });
    const r2 = await post(FIXED);
    expect(r2.status).toBe(200);
    const { dataUri } = (await r2.json()) as { dataUri: unknown };
    expect(typeof dataUri === 'string' && STRICT_DATA_URI.test(dataUri)).toBe(false);
  });

  it('a fixed seed replays the same fault sequence', async () => {
    const run = async (): Promise<number[]> => {
      sim.reset();
      sim.setFaults({ errorRates: { 503: 0.5 }, seed: 42 });
      const out: number[] = [];
      for (let i = 0; i < 8; i++) {
        const res = await post(FIXED);
        out.push(res.status);
        await res.body?.cancel();
      }
      return out;
    };
    const a = await run();
    expect(await run()).toEqual(a);
    expect(new Set(a)).toEqual(new Set([200, 503]));
  });
});

describe('rate limit', () => {
  it('the N+1th call within a minute gets 429 with Retry-After', async () => {
    sim.setFaults({ rateLimitPerMinute: 3, retryAfter: '30' });
    for (let i = 0; i < 3; i++) await image(await post(FIXED));
    const res = await post(FIXED);
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('30');
    expect(await res.json()).toHaveProperty('error');
    expect(sim.stats().byStatus).toEqual({ '200': 3, '429': 1 });
  });
});

describe('latency', () => {
  it('every answer waits at least latencyMs, auth failures too', async () => {
    sim.setFaults({ latencyMs: 250 });
    for (const headers of [AUTH, {}]) {
      const started = performance.now();
      const res = await post(FIXED, headers);
      await res.arrayBuffer();
      // Timers fire at ms granularity, hence the small allowance.
      expect(performance.now() - started).toBeGreaterThanOrEqual(245);
    }
  });

  it('a client that leaves during the latency is counted as aborted', async () => {
    sim.setFaults({ latencyMs: 5000 });
    await expect(post(FIXED, AUTH, AbortSignal.timeout(100))).rejects.toThrow();
    await until(() => sim.stats().byStatus.aborted === 1);
  });
});

describe('concurrency stats', () => {
  it('counts calls open at once, hung ones until the client leaves', async () => {
    sim.setFaults({ latencyMs: 300 });
    await Promise.all(Array.from({ length: 3 }, async () => (await post(FIXED)).arrayBuffer()));
    expect(sim.stats()).toMatchObject({ inFlight: 0, maxConcurrent: 3 });
    sim.reset();
    sim.script([{ kind: 'hang' }]);
    const hung = post(FIXED, AUTH, AbortSignal.timeout(300)).catch(() => 'gone');
    await until(() => sim.stats().inFlight === 1);
    expect(await hung).toBe('gone');
    await until(() => sim.stats().inFlight === 0);
    expect(sim.stats().maxConcurrent).toBe(1);
  });
});

describe('admin endpoints', () => {
  const admin = (path: string, body?: unknown): Promise<Response> =>
    fetch(`${sim.url.replace(/\/api\/v5$/, '')}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });

  it('healthz, stats, faults, script, reset', async () => {
    expect((await admin('/healthz')).status).toBe(200);

    const faults = await admin('/admin/faults', { errorRates: { '503': 1 }, latencyMs: 10 });
    expect(faults.status).toBe(200);
    expect(await faults.json()).toMatchObject({
      errorRates: { '503': 1 },
      latencyMs: 10,
      retryAfter: '1',
    });
    expect((await post(FIXED)).status).toBe(503);
    expect(await (await admin('/admin/faults')).json()).toMatchObject({ latencyMs: 10 });

    const script = await admin('/admin/script', [
      { kind: 'status', status: 502, message: 'x' },
      { kind: 'ok' },
    ]);
    expect(await script.json()).toEqual({ queued: 2 });
    expect((await post(FIXED)).status).toBe(502);
    expect((await post(FIXED)).status).toBe(200);

    const stats = (await (await admin('/admin/stats')).json()) as {
      total: number;
      byStatus: Record<string, number>;
    };
    expect(stats.total).toBe(3);
    expect(stats.byStatus).toEqual({ '503': 1, '502': 1, '200': 1 });

    expect(await (await admin('/admin/reset', {})).json()).toEqual({ ok: true });
    expect(await (await admin('/admin/stats')).json()).toEqual({
      total: 0,
      byStatus: {},
      byHash: {},
      inFlight: 0,
      maxConcurrent: 0,
    });
    expect(await (await admin('/admin/faults')).json()).toMatchObject({
      errorRates: {},
      latencyMs: 0,
    });
    await image(await post(FIXED));
  });

  it('rejects invalid faults and scripts with 400', async () => {
    for (const [path, body] of [
      ['/admin/faults', { hangRate: 2 }],
      ['/admin/faults', { errorRates: { '418': 0.5 } }],
      ['/admin/faults', { nope: 1 }],
      ['/admin/script', { kind: 'ok' }],
      ['/admin/script', [{ kind: 'status' }]],
    ] as const) {
      const res = await admin(path, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(await res.json()).toHaveProperty('error');
    }
  });

  it('unknown paths and methods give a JSON 404', async () => {
    const res = await fetch(`${sim.url}/query/topXchart`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: 'Not Found' });
  });
});

describe('close', () => {
  it('does not wait for hung or delayed requests', async () => {
    const own = await startSimulator({ email: EMAIL, token: TOKEN, faults: { hangRate: 1 } });
    const url = `${own.url}/query/topXchart`;
    const init = { method: 'POST', headers: AUTH, body: JSON.stringify(FIXED) };
    const hung = fetch(url, { ...init, signal: AbortSignal.timeout(20_000) }).then(
      () => 'answered',
      () => 'failed',
    );
    await until(() => own.stats().byStatus.hang === 1);
    own.setFaults({ hangRate: 0, latencyMs: 30_000 });
    const delayed = fetch(url, { ...init, signal: AbortSignal.timeout(20_000) }).then(
      () => 'answered',
      () => 'failed',
    );
    await until(() => own.stats().total === 2);
    const started = Date.now();
    await own.close();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await hung).toBe('failed');
    expect(await delayed).toBe('failed');
    await own.close(); // idempotent
  });

  it('reset() closes hung sockets', async () => {
    sim.script([{ kind: 'hang' }]);
    const pending = post(FIXED, AUTH, AbortSignal.timeout(20_000)).then(
      () => 'answered',
      () => 'failed',
    );
    await until(() => sim.stats().byStatus.hang === 1);
    sim.reset();
    expect(await pending).toBe('failed');
  });
});
