import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { sampleRequest, type KentikRequest } from 'kentik-simulator';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SERVER = path.join(ROOT, 'src/server.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href;

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface Service {
  url: string;
  cachePath: string;
  /** The KT_AUTH_TOKEN it was given: it must appear in no output line and no answer. */
  token: string;
  proc: ChildProcess;
  /** Every line the process printed, stdout and stderr, raw. */
  output: string[];
  /** Parsed JSON log lines. */
  logs(): LogLine[];
  /** Resolves with the first log line (already printed or future) that matches. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Sends a signal and resolves with the exit code (or signal name). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  exited: Promise<number | string>;
}

const createdDirs: string[] = [];

/** A fresh temporary directory, removed after the test file (see removeTempDirs). */
export function tempDir(prefix = 'kic-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  createdDirs.push(dir);
  return dir;
}

/**
 * Stops every service this test file started and is still running, then removes every directory
 * tempDir made: a full `npm test` leaves nothing in the temp folder (setup file, afterAll).
 */
export async function removeTempDirs(): Promise<void> {
  await Promise.all(started.map((s) => s.stop('SIGKILL')));
  for (const dir of createdDirs.splice(0))
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

const started: Service[] = [];

/** Every service started by this test file (see no-secret.setup.ts). */
export function startedServices(): readonly Service[] {
  return started;
}

export interface StartOptions {
  cachePath?: string;
  expectFail?: boolean;
  /** Run this compiled entry (see build.ts) instead of src/server.ts through tsx: starts ~3x faster. */
  entry?: string;
  /** Extra node options, e.g. ['--expose-gc', '--import', probe]. */
  nodeArgs?: string[];
}

/**
 * Starts the real service as a child process (from source, via tsx) on a free port and resolves
 * once it listens. It runs in an empty working directory, so no developer .env leaks in.
 */
export async function startService(
  env: Record<string, string>,
  opts: StartOptions = {},
): Promise<Service> {
  const cachePath = opts.cachePath ?? tempDir('kic-cache-');
  const cwd = tempDir('kic-cwd-');
  const fullEnv: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    HOST: '127.0.0.1',
    PORT: '0',
    CACHE_PATH: cachePath,
    KT_AUTH_EMAIL: 'test@example.com',
    KT_AUTH_TOKEN: TEST_TOKEN,
    LOG_LEVEL: 'debug',
    // Tests POST hundreds of queries a second from one address; the tests of the rate limit
    // itself set it.
    RATE_LIMIT_MAX: '0',
    // Likewise hundreds of sockets at once from 127.0.0.1 (slow-clients.test.ts tests the cap).
    MAX_CONNECTIONS_PER_ADDRESS: '0',
    ...env,
  };
  const args = [
    ...(opts.nodeArgs ?? []),
    ...(opts.entry ? [opts.entry] : ['--import', TSX, SERVER]),
  ];
  const proc = spawn(process.execPath, args, {
    cwd,
    env: fullEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const listeners = new Set<(line: string) => void>();
  const collect = (stream: NodeJS.ReadableStream | null): void => {
    let buf = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        output.push(line);
        for (const l of listeners) l(line);
      }
    });
  };
  collect(proc.stdout);
  collect(proc.stderr);
  const exited = new Promise<number | string>((resolve) =>
    proc.once('exit', (code, signal) => {
      rmSync(cwd, { recursive: true, force: true });
      resolve(code ?? signal ?? -1);
    }),
  );

  const parse = (line: string): LogLine | undefined => {
    try {
      const v = JSON.parse(line) as LogLine;
      return typeof v === 'object' && v !== null && typeof v.msg === 'string' ? v : undefined;
    } catch {
      return undefined;
    }
  };

  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      for (const line of output) {
        const l = parse(line);
        if (l && pred(l)) return resolve(l);
      }
      const timer = setTimeout(() => {
        listeners.delete(onLine);
        reject(
          new Error(
            `no matching log line within ${timeoutMs} ms; output:\n${output.slice(-30).join('\n')}`,
          ),
        );
      }, timeoutMs);
      const onLine = (line: string): void => {
        const l = parse(line);
        if (l && pred(l)) {
          clearTimeout(timer);
          listeners.delete(onLine);
          resolve(l);
        }
      };
      listeners.add(onLine);
      void exited.then(() => {
        if (!listeners.has(onLine)) return;
        clearTimeout(timer);
        listeners.delete(onLine);
        reject(
          new Error(
            `service exited before the awaited log line; output:\n${output.slice(-30).join('\n')}`,
          ),
        );
      });
    });

  const service: Service = {
    url: '',
    cachePath,
    token: fullEnv.KT_AUTH_TOKEN ?? TEST_TOKEN,
    proc,
    output,
    logs: () => output.map(parse).filter((l): l is LogLine => l !== undefined),
    waitForLog,
    stop: (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
    exited,
  };
  started.push(service);
  if (opts.expectFail) return service;
  const listening = await waitForLog((l) => l.msg.startsWith('Server listening at '));
  service.url = listening.msg.slice('Server listening at '.length);
  return service;
}

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json, headers: res.headers };
}

/** POSTs a query and returns the id, failing loudly on anything but 200. */
export async function requestImage(url: string, apiQuery: unknown, ttl?: number): Promise<string> {
  const r = await postJson(
    `${url}/requests`,
    ttl === undefined ? { api_query: apiQuery } : { api_query: apiQuery, ttl },
  );
  if (r.status !== 200)
    throw new Error(`POST /requests answered ${r.status}: ${JSON.stringify(r.json)}`);
  return r.json.id as string;
}

export async function getImage(
  url: string,
  id: string,
  init: RequestInit = {},
): Promise<{ status: number; bytes: Buffer; headers: Headers; json: any }> {
  const res = await fetch(`${url}/image/${id}`, init);
  const bytes = Buffer.from(await res.arrayBuffer());
  let json: any;
  if ((res.headers.get('content-type') ?? '').includes('json'))
    json = JSON.parse(bytes.toString('utf8'));
  return { status: res.status, bytes, headers: res.headers, json };
}

/** Reads one sample's value from the Prometheus text format. */
export async function metric(
  url: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const lbl = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => lbl.includes(`${k}="${v}"`)))
      total += Number(m[3]);
  }
  return total;
}

/** A valid Kentik topXchart query (the simulator's fixture); `n` makes it unique. */
export function kentikQuery(n: number | string = 0, imageType = 'png'): Record<string, unknown> {
  return {
    ...sampleRequest(
      { query_title: `test query ${n}` },
      { imageType: imageType as KentikRequest['imageType'] },
    ),
  };
}

export const TEST_TOKEN = 'test-token-DO-NOT-LEAK';

/** The Kentik token must never reach a log line or an answer. */
export function expectNoSecret(lines: string[], token = TEST_TOKEN): void {
  const leaks = lines.filter((l) => l.includes(token));
  if (leaks.length > 0)
    throw new Error(`the Kentik token leaked into ${leaks.length} line(s), e.g.: ${leaks[0]}`);
}

export async function getJson(url: string): Promise<any> {
  return (await fetch(url)).json();
}
