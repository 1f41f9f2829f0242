/**
 * Storage honesty (issue 9): one process per CACHE_PATH (a second refuses to start and names the
 * first; a lock left by kill -9 is taken over), an id only once its entry is saved, /readyz checks
 * and recreates every folder, and unreadable stored files are a 503 that names the cause.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { readStoredEntries } from '../src/store/fs-store.ts';
import {
  getImage,
  kentikQuery,
  postJson,
  removeDir,
  requestImage,
  startService,
  tempDir,
  type Service,
} from './helpers/service.ts';

let sim: Simulator;
const dirs: string[] = [];
const services: Service[] = [];
beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
});
afterAll(async () => {
  for (const s of services) await s.stop('SIGKILL');
  await sim.close();
  for (const d of dirs) removeDir(d);
});
const start = async (env: Record<string, string>, cachePath?: string, expectFail = false) => {
  const s = await startService({ KENTIK_API_URL: sim.url, ...env }, { cachePath, expectFail });
  services.push(s);
  return s;
};
const dir = (): string => {
  const d = tempDir('kic-honest-');
  dirs.push(d);
  return d;
};

describe('one process per CACHE_PATH', () => {
  it('a second process refuses to start, naming the first; the first keeps every file', async () => {
    const cachePath = dir();
    const first = await start({}, cachePath);
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await requestImage(first.url, kentikQuery(`lock-${i}`)));
    for (const id of ids) expect((await getImage(first.url, id)).status).toBe(200);

    const second = await start({ CACHE_MAINTENANCE_PERIOD: '0.05' }, cachePath, true);
    expect(await second.exited).toBe(3);
    const said = second.output.join('\n');
    expect(said).toContain(`pid ${first.proc.pid} on host ${os.hostname()}`);
    expect(said).toMatch(/started \d{4}-\d\d-\d\dT/);
    expect(said).toContain('CACHE_BACKEND=redis');

    // Nothing of the first was touched.
    for (const id of ids) expect((await getImage(first.url, id)).status).toBe(200);
    expect(readdirSync(path.join(cachePath, 'blobs')).length).toBeGreaterThan(0);

    // kill -9 leaves the lock behind; the next start sees its pid is gone and takes over at once.
    await first.stop('SIGKILL');
    expect(existsSync(path.join(cachePath, '.lock'))).toBe(true);
    const third = await start({}, cachePath);
    for (const id of ids) expect((await getImage(third.url, id)).status).toBe(200);
    // A clean stop releases it.
    expect(await third.stop()).toBe(0);
    expect(existsSync(path.join(cachePath, '.lock'))).toBe(false);
  });
});

describe('saves', () => {
  it('a POST whose entry cannot be saved fails with 503 naming the cause, and /readyz says so', async () => {
    const cachePath = dir();
    const svc = await start({}, cachePath);
    // entries/ replaced by a file: every write under it fails with ENOTDIR (root included,
    // which a read-only mode bit would not stop).
    rmSync(path.join(cachePath, 'entries'), { recursive: true });
    writeFileSync(path.join(cachePath, 'entries'), '');
    const r = await postJson(`${svc.url}/requests`, { api_query: kentikQuery('unsaved') });
    expect(r.status).toBe(503);
    expect(r.json).toMatchObject({ type: 'Storage unavailable', loc: ['storage'] });
    expect(r.json.msg).toContain('ENOTDIR');
    expect(r.headers.get('retry-after')).toBeTruthy();
    const ready = await fetch(`${svc.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { msg: string }).msg).toMatch(/entries.*(EEXIST|ENOTDIR)/);

    // Fixed: /readyz recreates the folder, and POSTs work again.
    rmSync(path.join(cachePath, 'entries'));
    expect((await fetch(`${svc.url}/readyz`)).status).toBe(200);
    const id = await requestImage(svc.url, kentikQuery('unsaved'));
    expect((await getImage(svc.url, id)).status).toBe(200);
    expect((await readStoredEntries(cachePath)).has(id)).toBe(true);
  });

  it('/readyz recreates a CACHE_PATH deleted under the running service', async () => {
    const cachePath = dir();
    const svc = await start({}, cachePath);
    rmSync(cachePath, { recursive: true });
    expect((await fetch(`${svc.url}/readyz`)).status).toBe(200);
    for (const sub of ['entries', 'blobs', 'quarantine'])
      expect(existsSync(path.join(cachePath, sub)), sub).toBe(true);
    const id = await requestImage(svc.url, kentikQuery('recreated'));
    expect((await getImage(svc.url, id)).status).toBe(200);
  });
});

describe('unreadable stored files', () => {
  it.each([
    ['a directory where the image file should be', 'EISDIR'],
    ['blobs/ replaced by a file', 'ENOTDIR'],
  ])('%s: GET answers 503 naming %s', async (_what, code) => {
    const cachePath = dir();
    const svc = await start({ MEMORY_CACHE_BYTES: '0' }, cachePath);
    const id = await requestImage(svc.url, kentikQuery(`unreadable-${code}`));
    expect((await getImage(svc.url, id)).status).toBe(200);
    const blobs = path.join(cachePath, 'blobs');
    const [digest] = readdirSync(blobs);
    if (code === 'EISDIR') {
      rmSync(path.join(blobs, digest!));
      mkdirSync(path.join(blobs, digest!));
    } else {
      rmSync(blobs, { recursive: true });
      writeFileSync(blobs, '');
    }
    const r = await getImage(svc.url, id);
    expect(r.status).toBe(503);
    expect(r.json).toMatchObject({ type: 'Storage unavailable', loc: ['storage'] });
    expect(r.json.msg).toContain(code);
    expect(r.json.msg).toContain('CACHE_PATH');
  });
});
