/**
 * Shutdown (issue 9): SIGTERM answers every waiting GET with 503 + Retry-After at once, saves the
 * snapshot, leaves queued work for the next start and exits within a bound; aborting a queue of
 * 100k fetches is linear.
 */
import { existsSync, mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PendingEntry } from '../src/domain/entry.ts';
import { queryHash } from '../src/domain/hash.ts';
import { formatId } from '../src/domain/ids.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { readStoredEntries } from '../src/store/fs-store.ts';
import { putRecord } from '../src/store/records.ts';
import { buildService } from './helpers/build.ts';
import {
  getImage,
  kentikQuery,
  metric,
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

describe('SIGTERM', () => {
  it('answers waiting GETs 503 + Retry-After at once, saves the snapshot, resumes at next start', async () => {
    const cachePath = tempDir('kic-shutdown-');
    dirs.push(cachePath);
    const svc = await startService(
      { KENTIK_API_URL: sim.url, ENTRY_WAIT_TIMEOUT: '120' },
      { cachePath },
    );
    services.push(svc);
    const done = await requestImage(svc.url, kentikQuery('done-before'));
    expect((await getImage(svc.url, done)).status).toBe(200);

    sim.setFaults({ latencyMs: 600_000 });
    const pending = await requestImage(svc.url, kentikQuery('pending-at-shutdown'));
    const gets = Array.from({ length: 20 }, () =>
      fetch(`${svc.url}/image/${pending}`).then(async (r) => ({
        status: r.status,
        retryAfter: r.headers.get('retry-after'),
        at: performance.now(),
        json: (await r.json()) as { msg: string },
      })),
    );
    // Every GET is waiting (the gauge counts them) before the signal.
    while ((await metric(svc.url, 'kic_waiters')) < gets.length);
    const t0 = performance.now();
    svc.proc.kill('SIGTERM');
    const answers = await Promise.all(gets);
    for (const a of answers) {
      expect(a.status).toBe(503);
      expect(Number(a.retryAfter)).toBeGreaterThan(0);
      expect(a.json.msg).toMatch(/restarting/);
      expect(a.at - t0).toBeLessThan(2000);
    }
    expect(await svc.exited).toBe(0);
    // Well inside the 10 s bound, whatever the clients did.
    expect(performance.now() - t0).toBeLessThan(5000);
    const snapshot = path.join(cachePath, 'index.snapshot');
    expect(existsSync(snapshot)).toBe(true);
    expect(statSync(snapshot).mtimeMs).toBeGreaterThan(Date.now() - 10_000);
    expect((await readStoredEntries(cachePath)).get(pending)?.kind).toBe('pending');

    sim.reset();
    const next = await startService({ KENTIK_API_URL: sim.url }, { cachePath });
    services.push(next);
    expect((await getImage(next.url, pending)).status).toBe(200);
    expect((await getImage(next.url, done)).status).toBe(200);
  });

  it('aborts a queue of 100,000 fetches in under a second', async () => {
    const N = 100_000;
    // 100k pending entries in one journal: on tmpfs where there is one (what is measured here is
    // the abort, not the disk).
    const cachePath = existsSync('/dev/shm')
      ? mkdtempSync(path.join('/dev/shm', 'kic-long-queue-'))
      : tempDir('kic-long-queue-');
    dirs.push(cachePath);
    const entries = path.join(cachePath, 'entries');
    mkdirSync(entries, { recursive: true });
    const now = Date.now();
    const records: string[] = [];
    for (let i = 0; i < N; i++) {
      const query = { n: i };
      const hash = queryHash(query);
      const expiresAt = now + 3600_000;
      const entry: PendingEntry = {
        kind: 'pending',
        id: formatId(hash, expiresAt),
        hash,
        expiresAt,
        createdAt: now,
        query: JSON.stringify(query),
      };
      records.push(putRecord(entry));
    }
    writeFileSync(path.join(entries, 'journal-1'), records.join(''));
    sim.setFaults({ hangRate: 1 });
    const svc = await startService(
      { KENTIK_API_URL: sim.url, LOG_LEVEL: 'info' },
      { cachePath, entry: await buildService() },
    );
    services.push(svc);
    const loaded = await svc.waitForLog((l) => l.msg === 'cache loaded', 60_000);
    expect(loaded.resumed).toBe(N);
    svc.proc.kill('SIGTERM');
    const stopped = await svc.waitForLog((l) => l.msg.startsWith('shutdown: fetches stopped'));
    expect(stopped.fetches).toBe(N);
    expect(stopped.durationMs, `aborted ${N} in ${stopped.durationMs} ms`).toBeLessThan(1000);
    console.log(`aborted ${N} queued fetches in ${stopped.durationMs} ms`);
    expect(await svc.exited).toBe(0);
    sim.reset();
  }, 120_000);
});
