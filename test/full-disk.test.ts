import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { readStoredEntries } from '../src/store/fs-store.ts';
import {
  getImage,
  getJson,
  kentikQuery,
  metric,
  postJson,
  requestImage,
  startService,
  tempDir,
  type Service,
} from './support/index.ts';

/**
 * A real full disk: a 4 MiB tmpfs mounted for the test (needs root; CI runs as root). Where
 * mounting is refused the test is skipped and says why.
 */
const mountPoint = tempDir('kic-full-disk-');
let mountError: string | undefined;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint], { stdio: 'pipe' });
} catch (err) {
  mountError = ((err as { stderr?: Buffer }).stderr?.toString() || (err as Error).message).trim();
  console.warn(`full-disk test skipped: cannot mount a tmpfs (${mountError})`);
}

describe.skipIf(mountError !== undefined)('full disk (ENOSPC)', () => {
  let sim: Simulator;
  let svc: Service;
  const filler = path.join(mountPoint, 'filler');

  beforeAll(async () => {
    sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
    svc = await startService(
      { KENTIK_API_URL: sim.url, KENTIK_API_RETRIES: '0', REUSE_WINDOW: '0' },
      { cachePath: path.join(mountPoint, 'cache') },
    );
  });
  afterAll(async () => {
    await svc?.stop();
    await sim?.close();
    execFileSync('umount', [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });

  it('refuses new POSTs with 507 (no id it could not save), keeps serving stored images, and recovers when space returns', async () => {
    const stored = await requestImage(svc.url, kentikQuery('disk-before'), 600);
    const before = await getImage(svc.url, stored);
    expect(before.status).toBe(200);

    // Fill the disk to the last byte.
    try {
      writeFileSync(filler, Buffer.alloc(8 * 1024 * 1024));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }

    // Entry records are appended to a journal: a POST may still fit in the page the journal
    // already has. Every id handed out must be on disk; within a few POSTs one no longer fits.
    const accepted: string[] = [];
    let r = await postJson(`${svc.url}/requests`, {
      api_query: kentikQuery('disk-full-0'),
      ttl: 600,
    });
    for (let i = 1; r.status === 200 && i < 50; i++) {
      accepted.push(r.json.id as string);
      r = await postJson(`${svc.url}/requests`, {
        api_query: kentikQuery(`disk-full-${i}`),
        ttl: 600,
      });
    }
    expect(r.status).toBe(507);
    const onDisk = await readStoredEntries(path.join(mountPoint, 'cache'));
    for (const id of accepted) expect(onDisk.has(id), id).toBe(true);
    expect(r.json).toMatchObject({
      type: 'Insufficient storage',
      msg: expect.stringContaining('ENOSPC'),
    });
    expect(
      await metric(svc.url, 'kic_store_write_errors_total', { code: 'ENOSPC' }),
    ).toBeGreaterThan(0);

    const again = await getImage(svc.url, stored);
    expect(again.status).toBe(200);
    expect(again.bytes.equals(before.bytes)).toBe(true);
    expect((await fetch(`${svc.url}/readyz`)).status).toBe(503);
    expect((await fetch(`${svc.url}/healthz`)).status).toBe(200);

    rmSync(filler);
    expect((await fetch(`${svc.url}/readyz`)).status).toBe(200);
    const recovered = await requestImage(svc.url, kentikQuery('disk-after'), 600);
    expect((await getImage(svc.url, recovered)).status).toBe(200);
    // Ids saved while the disk was full: their fetch stored its image, or answers 507 if it ran
    // out of space first. Either way they are settled now, never pending.
    for (const id of accepted) expect([200, 507]).toContain((await getImage(svc.url, id)).status);
    const info = await getJson(`${svc.url}/info`);
    expect(info.active_count).toBe(2 + accepted.length);
    expect(info.pending_count).toBe(0);
  });
});
