/**
 * vitest globalSetup: the whole run gets its own temporary folder (TMPDIR, which every worker and
 * every process it starts inherit), and the run fails if a test left a `kic-*` directory in it.
 * The folder itself is removed either way, so even a failed run leaves nothing behind.
 */
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let runDir: string | undefined;
let previous: string | undefined;

export function setup(): void {
  previous = process.env.TMPDIR;
  runDir = mkdtempSync(path.join(os.tmpdir(), 'kentik-image-cache-test-run-'));
  // Traversable by others (not listable): nginx workers in the benchmark test run as another user.
  chmodSync(runDir, 0o711);
  process.env.TMPDIR = runDir;
}

export function teardown(): void {
  if (!runDir) return;
  // kic-build-* is the compiled service every test file shares on purpose (see build.ts).
  const left = readdirSync(runDir).filter(
    (name) => name.startsWith('kic-') && !name.startsWith('kic-build-'),
  );
  rmSync(runDir, { recursive: true, force: true, maxRetries: 3 });
  if (previous === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = previous;
  if (left.length > 0) {
    // vitest reports a teardown error but would still exit 0.
    process.exitCode = 1;
    throw new Error(
      `tests left ${left.length} kic-* temporary director${left.length === 1 ? 'y' : 'ies'} behind: ${left.slice(0, 10).join(', ')}. ` +
        'Make them with tempDir() from test/support/tmp.ts (removed after each file) or remove them in afterAll.',
    );
  }
}
