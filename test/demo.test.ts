import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
/** Issue 12: demo URLs must still work when a person gets round to opening them. */
const DEMO_MIN_TTL = 15 * 60;
// The tsx command line, as `npm run demo` runs it: it starts a second node process and relays signals.
const TSX_CLI = createRequire(import.meta.url).resolve('tsx/cli');

function startDemo(args: string[]): {
  proc: ChildProcess;
  output: () => string;
  line: (re: RegExp) => Promise<RegExpExecArray>;
} {
  const proc = spawn(
    process.execPath,
    [TSX_CLI, 'src/cli/demo.ts', '--port', '0', '--sim-port', '0', ...args],
    {
      cwd: ROOT,
      // Its own process group, like a terminal's foreground job: Ctrl-C reaches every process in it.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  const waiters = new Set<() => void>();
  for (const s of [proc.stdout, proc.stderr])
    s!.on('data', (d: Buffer) => {
      out += d.toString();
      for (const w of waiters) w();
    });
  const line = (re: RegExp): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(out);
        if (m) {
          waiters.delete(check);
          resolve(m);
        }
      };
      waiters.add(check);
      proc.once('exit', () => reject(new Error(`demo exited before ${re}; output:\n${out}`)));
      check();
    });
  return { proc, output: () => out, line };
}

const exited = (proc: ChildProcess): Promise<number | null> =>
  proc.exitCode !== null
    ? Promise.resolve(proc.exitCode)
    : new Promise((r) => proc.once('exit', (c) => r(c)));

describe('npm run demo', () => {
  it('prints the dashboard and image URLs that live at least 15 minutes', async () => {
    const demo = startDemo(['--once']);
    expect(await exited(demo.proc)).toBe(0);
    const out = demo.output();
    expect(out).toMatch(/http:\/\/127\.0\.0\.1:\d+\/ {12}the dashboard/);
    const expiries = [...out.matchAll(/\/image\/[0-9a-f]{64}_(\d+(?:\.\d+)?)/g)].map((m) =>
      Number(m[1]),
    );
    expect(expiries.length).toBe(13);
    const soonest = Math.min(...expiries) * 1000;
    expect(soonest).toBeGreaterThanOrEqual(Date.now() + (DEMO_MIN_TTL - 120) * 1000);
  });

  it('Ctrl-C removes its temporary cache directory, even when the signal arrives twice', async () => {
    const demo = startDemo([]);
    const [, cachePath] = await demo.line(/CACHE_PATH (\S+)\)/);
    await demo.line(/Press Ctrl-C to stop\./);
    expect(existsSync(cachePath!)).toBe(true);
    // Ctrl-C signals the whole group; npm and tsx then relay it once more, a moment later, to
    // the demo, which is by then busy stopping.
    process.kill(-demo.proc.pid!, 'SIGINT');
    await demo.line(/Stopping the cache and the simulator/);
    process.kill(-demo.proc.pid!, 'SIGINT');
    await exited(demo.proc);
    // The child may outlive tsx by a moment: wait for the group to be gone.
    await new Promise<void>((resolve) => {
      const poll = (): void => {
        try {
          process.kill(-demo.proc.pid!, 0);
          setTimeout(poll, 50);
        } catch {
          resolve();
        }
      };
      poll();
    });
    expect(existsSync(cachePath!)).toBe(false);
  });
});
