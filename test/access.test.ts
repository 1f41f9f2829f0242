/**
 * Access control (issue 9): with API_KEYS set, POST /requests, /info, the dashboard's data and
 * PUT/DELETE /charts need a key (Bearer or X-API-Key, 401 JSON otherwise), images, health,
 * readiness, the favicon and the dashboard page stay open, /metrics needs METRICS_KEY, and no key
 * ever reaches a log line or an answer (its name is logged).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from 'kentik-simulator';
import {
  getImage,
  kentikQuery,
  postJson,
  removeDir,
  startService,
  tempDir,
  type Service,
} from './helpers/service.ts';

const KEY_A = 'key-alpha-0123456789abcdef-SECRET';
const KEY_B = 'key-beta-fedcba9876543210-SECRET';
const METRICS_KEY = 'metrics-key-0123456789-SECRET';

let sim: Simulator;
let svc: Service;
const keysDir = tempDir('kic-keys-');

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  const keysFile = path.join(keysDir, 'keys');
  writeFileSync(keysFile, `# dashboards\nbeta:${KEY_B}\n\n`);
  svc = await startService({
    KENTIK_API_URL: sim.url,
    API_KEYS: `alpha:${KEY_A}`,
    API_KEYS_FILE: keysFile,
    METRICS_KEY,
  });
});
afterAll(async () => {
  await svc.stop();
  await sim.close();
  removeDir(keysDir);
  // No key, in any form, in anything the service printed.
  for (const secret of [KEY_A, KEY_B, METRICS_KEY, KEY_A.slice(0, 12), KEY_B.slice(0, 12)])
    expect(svc.output.filter((l) => l.includes(secret))).toEqual([]);
});

const post = (headers: Record<string, string>, n: string) =>
  postJson(`${svc.url}/requests`, { api_query: kentikQuery(`access-${n}`) }, headers);

describe('API keys', () => {
  it('refuses POST /requests without a key, or with a wrong one, with 401 JSON', async () => {
    const attempts: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer wrong-key-0123456789abcdef' },
      { authorization: `Bearer ${KEY_A}x` },
      { authorization: `Basic ${Buffer.from(`u:${KEY_A}`).toString('base64')}` },
      { 'x-api-key': KEY_A.slice(0, -1) },
    ];
    for (const headers of attempts) {
      const r = await post(headers, 'refused');
      expect(r.status, JSON.stringify(headers)).toBe(401);
      expect(r.json).toMatchObject({ type: 'Unauthorized', loc: ['header', 'authorization'] });
      expect(r.json.msg).toMatch(/Authorization: Bearer/);
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
    }
    expect(sim.stats().total).toBe(0);
  });

  it('accepts a key from API_KEYS or API_KEYS_FILE, as Bearer or X-API-Key, and logs its name', async () => {
    const a = await post({ authorization: `Bearer ${KEY_A}` }, 'a');
    expect(a.status).toBe(200);
    const b = await post({ 'x-api-key': KEY_B }, 'b');
    expect(b.status).toBe(200);
    await svc.waitForLog((l) => l.msg === 'request' && l.apiKey === 'alpha');
    await svc.waitForLog((l) => l.msg === 'request' && l.apiKey === 'beta');
    // The image is a capability URL: open to anyone holding the id.
    const img = await getImage(svc.url, a.json.id);
    expect(img.status).toBe(200);
    expect(img.headers.get('content-type')).toBe('image/png');
  });

  it('keeps /healthz, /readyz and /favicon.ico open, and /info closed', async () => {
    for (const p of ['/healthz', '/readyz', '/favicon.ico'])
      expect((await fetch(`${svc.url}${p}`)).status, p).toBe(200);
    expect((await fetch(`${svc.url}/info`)).status).toBe(401);
    const info = await fetch(`${svc.url}/info`, { headers: { authorization: `Bearer ${KEY_B}` } });
    expect(info.status).toBe(200);
  });

  it('/metrics needs METRICS_KEY, not an API key', async () => {
    expect((await fetch(`${svc.url}/metrics`)).status).toBe(401);
    const withApiKey = await fetch(`${svc.url}/metrics`, {
      headers: { authorization: `Bearer ${KEY_A}` },
    });
    expect(withApiKey.status).toBe(401);
    const ok = await fetch(`${svc.url}/metrics`, {
      headers: { authorization: `Bearer ${METRICS_KEY}` },
    });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('kic_http_requests_total');
  });
});

describe('dashboard and named charts under API keys', () => {
  const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

  it('keeps the dashboard page open but its data (/dashboard/api/*) needs a key', async () => {
    for (const p of ['/', '/dashboard/app.js'])
      expect((await fetch(`${svc.url}${p}`)).status, p).toBe(200);
    for (const p of ['status', 'entries?limit=5', 'examples', 'events']) {
      const refused = await fetch(`${svc.url}/dashboard/api/${p}`);
      expect(refused.status, p).toBe(401);
      expect(await refused.json()).toMatchObject({ type: 'Unauthorized' });
      const wrong = await fetch(`${svc.url}/dashboard/api/${p}`, {
        headers: bearer('wrong-key-0123456789abcdef'),
      });
      expect(wrong.status, p).toBe(401);
    }
    const status = await fetch(`${svc.url}/dashboard/api/status`, { headers: bearer(KEY_A) });
    expect(status.status).toBe(200);
    expect(await status.json()).toHaveProperty('entries');
    const entries = await fetch(`${svc.url}/dashboard/api/entries?limit=5`, {
      headers: { 'x-api-key': KEY_B },
    });
    expect(entries.status).toBe(200);
    // The event stream, as the page reads it: fetch with the key as Bearer.
    const controller = new AbortController();
    const events = await fetch(`${svc.url}/dashboard/api/events`, {
      headers: { ...bearer(KEY_A), accept: 'text/event-stream' },
      signal: controller.signal,
    });
    expect(events.status).toBe(200);
    expect(events.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = events.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain('event: status');
    controller.abort();
    await reader.cancel().catch(() => {});
  });

  it('refuses PUT and DELETE /charts/{name} without a key; takes them with one', async () => {
    const body = JSON.stringify({ api_query: kentikQuery('access-chart'), refresh: 600 });
    const put = (headers: Record<string, string>) =>
      fetch(`${svc.url}/charts/access-chart`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
    const refused = await put({});
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ type: 'Unauthorized' });
    expect((await put(bearer('wrong-key-0123456789abcdef'))).status).toBe(401);
    expect((await fetch(`${svc.url}/charts/access-chart`)).status).toBe(404);
    const created = await put(bearer(KEY_A));
    expect([200, 201]).toContain(created.status);
    expect((await fetch(`${svc.url}/charts/access-chart`, { method: 'DELETE' })).status).toBe(401);
    expect((await fetch(`${svc.url}/charts/access-chart`)).status).toBe(200);
    const deleted = await fetch(`${svc.url}/charts/access-chart`, {
      method: 'DELETE',
      headers: { 'x-api-key': KEY_B },
    });
    expect(deleted.status).toBeLessThan(300);
    expect((await fetch(`${svc.url}/charts/access-chart`)).status).toBe(404);
  });
});

describe('open service', () => {
  it('warns once at start when API_KEYS is unset and HOST is not loopback', async () => {
    const open = await startService({ KENTIK_API_URL: sim.url, HOST: '0.0.0.0' });
    try {
      const warning = await open.waitForLog((l) => l.msg.includes('API_KEYS is not set'));
      expect(warning.level).toBe(40);
      expect(open.logs().filter((l) => l.msg.includes('API_KEYS is not set'))).toHaveLength(1);
      // And it works as the original API did: no key needed.
      const port = new URL(open.url).port;
      const r = await postJson(`http://127.0.0.1:${port}/requests`, {
        api_query: kentikQuery('open'),
      });
      expect(r.status).toBe(200);
    } finally {
      await open.stop();
    }
  });

  it('says nothing about it on loopback', async () => {
    const local = await startService({ KENTIK_API_URL: sim.url });
    await local.stop();
    expect(local.output.filter((l) => l.includes('API_KEYS is not set'))).toEqual([]);
  });

  it('refuses to start with a short key, without printing it', async () => {
    const bad = await startService(
      { KENTIK_API_URL: sim.url, API_KEYS: 'ops:short-SECRET' },
      { expectFail: true },
    );
    expect(await bad.exited).toBe(2);
    expect(bad.output.join('\n')).toContain('at least 16 characters');
    expect(bad.output.join('\n')).not.toContain('short-SECRET');
  });
});
