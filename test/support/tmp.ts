import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');

const createdDirs: string[] = [];

/** A fresh temporary directory; in tests removed after the file (see removeTempDirs in service.ts). */
export function tempDir(prefix = 'kic-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  createdDirs.push(dir);
  return dir;
}

/** Removes every directory tempDir made so far (and forgets them). */
export function removeCreatedDirs(): void {
  for (const dir of createdDirs.splice(0))
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A port nobody listens on right now (the kernel picks it; tiny race, loopback only). Only for
 * processes that cannot be told to take port 0 and say which one they got, or that must come
 * back on the same port.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** `which`: the absolute path of an executable on PATH, or undefined. */
export async function onPath(name: string): Promise<string | undefined> {
  const { access, constants } = await import('node:fs/promises');
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    try {
      await access(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}
