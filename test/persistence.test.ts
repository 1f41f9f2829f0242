import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from '../src/domain/hash.ts';
import { encodeEntry } from '../src/domain/entry-codec.ts';
import { readStoredEntries } from '../src/store/fs-store.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
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
} from './support/index.ts';

let sim: Simulator;
let n = 0;
const fresh = (type = 'png'): Record<string, unknown> => kentikQuery(`persist-${n++}`, type);
const calls = (q: unknown): number => sim.stats().byHash[queryHash(q)]?.calls ?? 0;

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
});
afterAll(async () => {
  await sim.close();
});
beforeEach(() => sim.reset());

describe('restarts', () => {
  it('serves the same images after a restart without calling Kentik again', async () => {
    const cachePath = tempDir();
    const env = { KENTIK_API_URL: sim.url };
    const first = await startService(env, { cachePath });
    const queries = [fresh('png'), fresh('svg'), fresh('pdf')];
    const ids = await Promise.all(queries.map((q) => requestImage(first.url, q, 600)));
    const before = await Promise.all(ids.map((id) => getImage(first.url, id)));
    expect(await first.stop()).toBe(0);

    const second = await startService(env, { cachePath });
    const after = await Promise.all(ids.map((id) => getImage(second.url, id)));
    for (const [i, r] of after.entries()) {
      expect(r.status).toBe(200);
      expect(r.bytes.equals(before[i]!.bytes)).toBe(true);
    }
    expect(queries.map(calls)).toEqual([1, 1, 1]);
    // Rule 1 still works across the restart.
    expect(await requestImage(second.url, queries[0], 60)).toBe(ids[0]);
    await second.stop();
    expectNoSecret([...first.output, ...second.output]);
    removeDir(cachePath);
  });

  it('keeps pending entries on SIGTERM and completes them after the next start', async () => {
    const cachePath = tempDir();
    sim.setFaults({ latencyMs: 3000 });
    const first = await startService({ KENTIK_API_URL: sim.url }, { cachePath });
    const q = fresh();
    const id = await requestImage(first.url, q, 600);
    const t0 = Date.now();
    expect(await first.stop('SIGTERM')).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000); // did not wait for Kentik
    expect((await readStoredEntries(cachePath)).get(id)?.kind).toBe('pending');

    sim.setFaults({ latencyMs: 0 });
    const second = await startService({ KENTIK_API_URL: sim.url }, { cachePath });
    expect((await second.waitForLog((l) => l.msg === 'cache loaded')).resumed).toBe(1);
    const r = await getImage(second.url, id);
    expect(r.status).toBe(200);
    await second.stop();
    removeDir(cachePath);
  });

  it('drops entries that expired while stopped', async () => {
    const cachePath = tempDir();
    const first = await startService({ KENTIK_API_URL: sim.url }, { cachePath });
    const id = await requestImage(first.url, fresh(), 1);
    await getImage(first.url, id);
    await first.stop();
    await new Promise((r) =>
      setTimeout(r, Math.max(0, Number(id.split('_')[1]) * 1000 - Date.now() + 10)),
    );
    const second = await startService({ KENTIK_API_URL: sim.url }, { cachePath });
    expect((await second.waitForLog((l) => l.msg === 'cache loaded')).expired).toBe(1);
    expect((await getImage(second.url, id)).status).toBe(404);
    await second.stop();
    removeDir(cachePath);
  });

  it('quarantines unreadable records and files, warns once each, and serves everything else', async () => {
    const cachePath = tempDir();
    const first = await startService({ KENTIK_API_URL: sim.url }, { cachePath });
    const good = await requestImage(first.url, fresh(), 600);
    const goodBytes = (await getImage(first.url, good)).bytes;
    const victims = await Promise.all(
      [fresh(), fresh(), fresh(), fresh()].map((q) => requestImage(first.url, q, 600)),
    );
    await Promise.all(victims.map((id) => getImage(first.url, id)));
    await first.stop();

    // The clean stop compacted everything into the snapshot: damage four of its records.
    const snapshot = path.join(cachePath, 'index.snapshot');
    const stored = await readStoredEntries(cachePath);
    const lines = readFileSync(snapshot, 'utf8').split('\n');
    const at = (id: string): number => lines.findIndex((l) => l.startsWith(`E ${id} `, 9));
    const [v0, v1, v2, v3] = victims.map(at) as [number, number, number, number];
    lines[v0] = lines[v0]!.slice(0, 40); // truncated
    lines[v1] = lines[v1]!.replace(' image ', ' imagf '); // a flipped bit: checksum
    lines[v2] = '\u0000\u009f\u0092 garbage'; // garbage
    // An entry of the format before the query records, of a version this one does not know, with a
    // checksum that holds.
    const body = 'P ' + encodeEntry(stored.get(victims[3]!)!).replace('"v":1', '"v":7');
    lines[v3] = `${crc32(body).toString(16).padStart(8, '0')} ${body}`;
    writeFileSync(snapshot, lines.join('\n'));
    writeFileSync(path.join(cachePath, 'entries', 'stray.json'), '{}'); // not an id

    const second = await startService({ KENTIK_API_URL: sim.url }, { cachePath });
    const warnings = second.logs().filter((l) => l.msg === 'unreadable cache file quarantined');
    expect(warnings).toHaveLength(5);
    expect(readdirSync(path.join(cachePath, 'quarantine'))).toHaveLength(5);
    const r = await getImage(second.url, good);
    expect(r.status).toBe(200);
    expect(r.bytes.equals(goodBytes)).toBe(true);
    for (const id of victims) expect((await getImage(second.url, id)).status).toBe(404);
    await second.stop();
    // Moved aside and compacted away at that load: reported once, not at every start.
    const third = await startService({ KENTIK_API_URL: sim.url }, { cachePath });
    expect(third.logs().filter((l) => l.msg === 'unreadable cache file quarantined')).toEqual([]);
    expect((await getImage(third.url, good)).status).toBe(200);
    await third.stop();
    removeDir(cachePath);
  });

  it('never serves an image whose bytes were damaged on disk', async () => {
    const cachePath = tempDir();
    const first = await startService({ KENTIK_API_URL: sim.url }, { cachePath });
    const id = await requestImage(first.url, fresh(), 600);
    const { headers } = await getImage(first.url, id);
    await first.stop();
    const digest = headers.get('etag')!.replaceAll('"', '');
    const blob = path.join(cachePath, 'blobs', digest);
    const bytes = readFileSync(blob);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 10) ^ 0xff, bytes.length - 10);
    writeFileSync(blob, bytes);
    const second = await startService({ KENTIK_API_URL: sim.url }, { cachePath });
    const r = await getImage(second.url, id);
    expect(r.status).toBe(404);
    expect(r.json.msg).toContain('damaged');
    expect(readdirSync(path.join(cachePath, 'quarantine'))).toHaveLength(1);
    await second.stop();
    removeDir(cachePath);
  });
});

describe('maintenance', () => {
  it('removes expired ids, unused image bytes and stale temp files', async () => {
    const cachePath = tempDir();
    const svc = await startService(
      { KENTIK_API_URL: sim.url, CACHE_MAINTENANCE_PERIOD: '0.2', REUSE_WINDOW: '0' },
      { cachePath },
    );
    const keep = await requestImage(svc.url, fresh(), 600);
    const gone = await requestImage(svc.url, fresh(), 1);
    await Promise.all([getImage(svc.url, keep), getImage(svc.url, gone)]);
    writeFileSync(path.join(cachePath, 'blobs', '.tmp-leftover'), 'half a file');
    expect(
      readdirSync(path.join(cachePath, 'blobs')).filter((f) => !f.startsWith('.')),
    ).toHaveLength(2);
    await svc.waitForLog((l) => l.msg === 'maintenance pass' && (l.expired as number) >= 1, 10_000);
    expect([...(await readStoredEntries(cachePath)).keys()]).toEqual([keep]);
    expect(readdirSync(path.join(cachePath, 'blobs'))).toEqual([
      (await getImage(svc.url, keep)).headers.get('etag')!.replaceAll('"', ''),
    ]);
    expect(await metric(svc.url, 'kic_cache_expired_total')).toBe(1);
    await svc.stop();
    removeDir(cachePath);
  });

  it('evicts least recently served images beyond CACHE_MAX_BYTES', async () => {
    const cachePath = tempDir();
    const probe = await startService({ KENTIK_API_URL: sim.url }, { cachePath });
    const size = (await getImage(probe.url, await requestImage(probe.url, fresh(), 600))).bytes
      .length;
    await probe.stop();
    removeDir(cachePath);

    // Room for about two of these charts.
    const svc = await startService({
      KENTIK_API_URL: sim.url,
      CACHE_MAINTENANCE_PERIOD: '0.2',
      CACHE_MAX_BYTES: String(Math.round(size * 2.5)),
    });
    const a = await requestImage(svc.url, fresh(), 600);
    await getImage(svc.url, a);
    const b = await requestImage(svc.url, fresh(), 600);
    await getImage(svc.url, b);
    await getImage(svc.url, a); // a is now more recently served than b
    const c = await requestImage(svc.url, fresh(), 600);
    await getImage(svc.url, c); // three images: over the limit, b is the least recently served
    await svc.waitForLog((l) => l.msg === 'maintenance pass' && (l.evicted as number) >= 1, 10_000);
    expect((await getImage(svc.url, b)).status).toBe(404);
    expect((await getImage(svc.url, a)).status).toBe(200);
    expect(await metric(svc.url, 'kic_cache_evictions_total')).toBeGreaterThanOrEqual(1);
    const info = await getJson(`${svc.url}/info`);
    expect(info.stored_bytes).toBeLessThanOrEqual(size * 2.5);
    await svc.stop();
  });
});

describe('configuration and lifecycle', () => {
  it('refuses to start with one message listing every problem', async () => {
    const svc = await startService(
      { KT_AUTH_TOKEN: '', CACHE_PATH: '', KENTIK_API_RETRIES: 'x', PORT: 'http' },
      { expectFail: true },
    );
    expect(await svc.exited).toBe(2);
    const text = svc.output.join('\n');
    for (const name of ['KT_AUTH_TOKEN', 'CACHE_PATH', 'KENTIK_API_RETRIES', 'PORT'])
      expect(text).toContain(name);
    expect(text).toContain('4 problems');
  });

  it('DEBUG=1 logs at debug level and prints the effective settings with the token redacted', async () => {
    const svc = await startService({ DEBUG: '1', LOG_LEVEL: 'info', KENTIK_API_URL: sim.url });
    const settings = await svc.waitForLog((l) => l.msg === 'effective settings');
    expect(settings.level).toBe(20);
    expect(settings.settings).toMatchObject({
      ktAuthToken: '[REDACTED]',
      ktAuthEmail: 'test@example.com',
      kentikApiUrl: sim.url,
    });
    await getImage(svc.url, await requestImage(svc.url, fresh()));
    await svc.stop();
    expectNoSecret(svc.output);
  });

  it('exits 0 on SIGINT', async () => {
    const svc = await startService({ KENTIK_API_URL: sim.url });
    expect(await svc.stop('SIGINT')).toBe(0);
    expect(svc.logs().some((l) => l.msg.startsWith('shutting down'))).toBe(true);
  });
});
