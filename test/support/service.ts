/**
 * Starts the real service as a child process, for tests and benchmarks alike: from source via tsx
 * (default), or a compiled entry (see build.ts, or dist/server.js). It runs in an empty working
 * directory, so no developer .env leaks in, with only the environment given here.
 */
import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { monoMs } from './clock.ts';
import { parseLogLine, startChild, type LogLine } from './process.ts';
import { freePort, removeCreatedDirs, removeDir, ROOT, tempDir } from './tmp.ts';

export type { LogLine } from './process.ts';

const SERVER = path.join(ROOT, 'src/server.ts');
export const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href;

export const TEST_TOKEN = 'test-token-DO-NOT-LEAK';

export interface Service {
  /** http://127.0.0.1:<port>; '' until it listens (and for expectFail). */
  url: string;
  cachePath: string;
  /** The KT_AUTH_TOKEN it was given: it must appear in no output line and no answer. */
  token: string;
  /** Every secret it was given (the token, the REDIS_URL password): checked like the token. */
  secrets: string[];
  proc: ChildProcess;
  pid: number;
  /** Monotonic ms (CLOCK_MONOTONIC, see clock.ts) when the process was spawned. */
  spawnedAt: number;
  /** Every line the process printed, stdout and stderr, raw. */
  output: string[];
  /** Parsed JSON log lines. */
  logs(): LogLine[];
  /** Resolves with the first log line (already printed or future) that matches. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Sends a signal and resolves with the exit code (or signal name); SIGKILL after 15 s. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  /** Sends a signal and returns at once (SIGSTOP, SIGCONT, SIGKILL…). */
  signal(signal: NodeJS.Signals): void;
  /** Throws (with the last lines it printed) if the process has exited. */
  assertAlive(): void;
  exited: Promise<number | string>;
}

const started: Service[] = [];

/** Every service started by this test file (see no-secret.setup.ts). */
export function startedServices(): readonly Service[] {
  return started;
}

/**
 * Stops every service this test file started and is still running, then removes every directory
 * tempDir made: a full `npm test` leaves nothing in the temp folder (no-secret.setup.ts, afterAll).
 */
export async function removeTempDirs(): Promise<void> {
  await Promise.all(started.map((s) => s.stop('SIGKILL')));
  removeCreatedDirs();
}

export interface StartOptions {
  /** Default: a new temp dir; none at all with CACHE_BACKEND=redis. */
  cachePath?: string;
  /** Resolve at once, without waiting for it to listen (a start that must fail). */
  expectFail?: boolean;
  /** Run this compiled entry (see build.ts, or dist/server.js) instead of src/server.ts through tsx. */
  entry?: string;
  /** Extra node options, e.g. ['--expose-gc', '--import', probe] or ['--cpu-prof', …]. */
  nodeArgs?: string[];
  /** A fixed port (to come back on the same one); default 0, the port the service reports. */
  port?: number;
  /**
   * How to tell it is up: 'log' (default; "Server listening at", needs LOG_LEVEL info or lower),
   * 'healthz' (polls GET /healthz; any log level, needs a fixed port, chosen here when not given),
   * 'none' (return right after spawning, url already known: a cold start measures readiness itself).
   */
  wait?: 'log' | 'healthz' | 'none';
  /** Keep only this many output lines (long benchmark runs). */
  keepLines?: number;
}

/** The password in a redis:// URL, if any (a secret exactly like the Kentik token). */
export function redisPassword(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    const pw = decodeURIComponent(new URL(url).password);
    return pw === '' ? undefined : pw;
  } catch {
    return undefined;
  }
}

export async function startService(
  env: Record<string, string>,
  opts: StartOptions = {},
): Promise<Service> {
  const redis = env.CACHE_BACKEND === 'redis';
  const cachePath = opts.cachePath ?? (redis ? '' : tempDir('kic-cache-'));
  const wait = opts.wait ?? 'log';
  const port = opts.port ?? (wait === 'log' ? 0 : await freePort());
  const cwd = tempDir('kic-cwd-');
  const fullEnv: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    HOST: '127.0.0.1',
    PORT: String(port),
    ...(cachePath ? { CACHE_PATH: cachePath } : {}),
    KT_AUTH_EMAIL: 'test@example.com',
    KT_AUTH_TOKEN: TEST_TOKEN,
    LOG_LEVEL: 'debug',
    // Tests POST hundreds of queries a second from one address; the tests of the per-client
    // rate limit itself set it.
    RATE_LIMIT_MAX: '0',
    // Likewise hundreds of sockets at once from 127.0.0.1 (slow-clients.test.ts tests the cap).
    MAX_CONNECTIONS_PER_ADDRESS: '0',
    ...env,
  };
  const args = [
    ...(opts.nodeArgs ?? []),
    ...(opts.entry ? [opts.entry] : ['--import', TSX, SERVER]),
  ];
  const spawnedAt = monoMs();
  const child = startChild(process.execPath, args, {
    cwd,
    env: fullEnv,
    keepLines: opts.keepLines,
    name: 'the service',
  });
  const { proc, output, exited } = child;
  void exited.then(() => removeDir(cwd));

  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> =>
    child
      .waitForLine(
        (line) => {
          const l = parseLogLine(line);
          return l !== undefined && pred(l);
        },
        timeoutMs,
        'matching log line',
      )
      .then((line) => parseLogLine(line)!);

  const secrets = [fullEnv.KT_AUTH_TOKEN, redisPassword(fullEnv.REDIS_URL)].filter(
    (s): s is string => typeof s === 'string' && s.length >= 4,
  );
  const service: Service = {
    url: wait === 'log' ? '' : `http://127.0.0.1:${port}`,
    cachePath,
    token: fullEnv.KT_AUTH_TOKEN ?? TEST_TOKEN,
    secrets,
    proc,
    pid: child.pid,
    spawnedAt,
    output,
    logs: () => output.map(parseLogLine).filter((l): l is LogLine => l !== undefined),
    waitForLog,
    stop: (signal = 'SIGTERM') => child.stop(signal),
    signal: (signal) => {
      if (child.alive()) proc.kill(signal);
    },
    assertAlive: () => {
      if (!child.alive())
        throw new Error(
          `the service exited (${proc.exitCode ?? proc.signalCode}):\n${output.slice(-20).join('\n')}`,
        );
    },
    exited,
  };
  started.push(service);
  if (opts.expectFail || wait === 'none') return service;
  if (wait === 'log') {
    const listening = await waitForLog((l) => l.msg.startsWith('Server listening at '), 60_000);
    service.url = listening.msg.slice('Server listening at '.length);
    return service;
  }
  await waitHealthy(service).catch(async (err: Error) => {
    await child.stop('SIGKILL');
    throw err;
  });
  return service;
}

async function waitHealthy(service: Service, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    service.assertAlive();
    try {
      const res = await fetch(`${service.url}/healthz`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline)
      throw new Error(
        `the service did not answer /healthz within ${timeoutMs} ms:\n${service.output.slice(-20).join('\n')}`,
      );
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Every secret must stay out of these lines (log output, answers). */
export function expectNoSecret(lines: string[], token = TEST_TOKEN): void {
  const leaks = lines.filter((l) => l.includes(token));
  if (leaks.length > 0)
    throw new Error(`a secret leaked into ${leaks.length} line(s), e.g.: ${leaks[0]}`);
}
