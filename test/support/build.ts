import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { ROOT } from './tmp.ts';

let built: Promise<string> | undefined;

/**
 * Compiles src/server.ts (and everything it imports from src/) into one ESM file, with the npm
 * packages left external, like `npm run build` but in ~50 ms. A compiled service starts in about
 * a second instead of three under tsx, which matters to tests that restart it dozens of times.
 *
 * The file goes to `<tmp>/kic-build-<sha256 of its content>/dist/server.mjs`, next to links to
 * `node_modules`, `assets` and `examples`, so package imports and the project root (`..` of the
 * bundle, see src/paths.ts) resolve exactly as from `dist/`. Content-addressed: every test file and every run with the same sources shares one
 * directory, and nothing needs cleaning up after a run.
 */
export function buildService(): Promise<string> {
  built ??= (async () => {
    const result = await build({
      entryPoints: [path.join(ROOT, 'src/server.ts')],
      outfile: 'server.mjs',
      write: false,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      sourcemap: 'inline',
      logLevel: 'warning',
    });
    const code = result.outputFiles[0]!.contents;
    const dir = path.join(
      os.tmpdir(),
      `kic-build-${createHash('sha256').update(ROOT).update(code).digest('hex').slice(0, 16)}`,
    );
    const outfile = path.join(dir, 'dist', 'server.mjs');
    if (!existsSync(outfile)) {
      mkdirSync(path.dirname(outfile), { recursive: true });
      for (const name of ['node_modules', 'assets', 'examples']) {
        try {
          symlinkSync(path.join(ROOT, name), path.join(dir, name));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // another worker was first
        }
      }
      // Other test files may build the same thing at the same moment: write aside, then rename.
      const temp = `${outfile}.${randomBytes(4).toString('hex')}`;
      writeFileSync(temp, code);
      renameSync(temp, outfile);
    }
    return outfile;
  })();
  return built;
}

/** Newest modification time of the files under `dir` matching `keep`. */
function newestMtime(dir: string, keep: (file: string) => boolean): number {
  let newest = 0;
  for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const file = path.join(dir, name);
    if (!keep(file)) continue;
    newest = Math.max(newest, statSync(file).mtimeMs);
  }
  return newest;
}

/**
 * The benchmarks' build: `npm run build` (tsc, the production dist/) when dist/ is missing or older
 * than any source file; returns whether it built. `dist/server.js` is then the service's entry.
 */
export function ensureBuild(log: (s: string) => void): boolean {
  const out = path.join(ROOT, 'dist/server.js');
  const src = newestMtime(
    path.join(ROOT, 'src'),
    (f) => f.endsWith('.ts') && !f.endsWith('.test.ts'),
  );
  const cfg = Math.max(
    statSync(path.join(ROOT, 'tsconfig.json')).mtimeMs,
    statSync(path.join(ROOT, 'tsconfig.build.json')).mtimeMs,
  );
  // tsc rewrites every output, so dist/server.js carries the time of the last build.
  if (existsSync(out) && statSync(out).mtimeMs >= Math.max(src, cfg)) return false;
  log('building the service (npm run build)…');
  const r = spawnSync(
    process.platform === 'win32' ? 'npm.cmd' : 'npm',
    ['run', '--silent', 'build'],
    { cwd: ROOT, stdio: 'inherit' },
  );
  if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status ?? r.signal})`);
  return true;
}

/** dist/server.js, the production build's entry (see ensureBuild). */
export const DIST_ENTRY = path.join(ROOT, 'dist/server.js');
