import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { request } from './http.ts';
import { freePort, monoMs, onPath, sleep, waitFor } from './util.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href;

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
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

/** Runs `npm run build` when dist/ is missing or older than any source file; returns whether it built. */
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

/** Collects a child's output lines (the last 200) for error messages. */
function collect(proc: ChildProcess): string[] {
  const lines: string[] = [];
  for (const stream of [proc.stdout, proc.stderr]) {
    let buf = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (lines.length > 200) lines.shift();
      }
    });
  }
  return lines;
}

function exited(proc: ChildProcess): Promise<number | string> {
  if (proc.exitCode !== null || proc.signalCode !== null)
    return Promise.resolve(proc.exitCode ?? proc.signalCode ?? -1);
  return new Promise((resolve) =>
    proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
}

async function stopProcess(proc: ChildProcess, graceMs = 15_000): Promise<number | string> {
  const done = exited(proc);
  if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  const code = await done;
  clearTimeout(timer);
  return code;
}

// --- simulator ------------------------------------------------------------------------------

export interface UpstreamCall {
  hash: string | null;
  start: number;
  end: number;
  status: number;
}

export interface SimControl {
  /** KENTIK_API_URL for the service: the timestamping proxy in front of the simulator. */
  url: string;
  email: string;
  token: string;
  pid: number;
  setLatency(ms: number): Promise<void>;
  /** Chart calls the proxy saw since `since` (an index from a previous call, 0 at first). */
  calls(since?: number): Promise<{ calls: UpstreamCall[]; next: number }>;
  /** Renders queries once, bypassing the proxy, so the service's call finds them rendered. */
  warm(queries: unknown[]): Promise<void>;
  cpuMs(): Promise<number>;
  /** Answer chart calls at once with this PNG (made unique per call) instead of rendering; undefined: render again. */
  canned(png: Buffer | undefined): Promise<void>;
  stop(): Promise<void>;
}

export async function startSimulator(latencyMs: number): Promise<SimControl> {
  const proc = spawn(
    process.execPath,
    ['--import', TSX, path.join(ROOT, 'bench/lib/sim-child.ts')],
    {
      cwd: ROOT,
      env: { ...process.env, SIM_LATENCY_MS: String(latencyMs) },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    },
  );
  const output = collect(proc);
  let next = 1;
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  const ready = new Promise<{ url: string; email: string; token: string; pid: number }>(
    (resolve, reject) => {
      proc.on('message', (msg: any) => {
        if (msg?.ready) return resolve(msg.ready);
        const p = pending.get(msg?.id);
        if (!p) return;
        pending.delete(msg.id);
        if (msg.ok) p.resolve(msg.value);
        else p.reject(new Error(`simulator: ${msg.error}`));
      });
      proc.once('exit', (code) => {
        const err = new Error(
          `simulator process exited (${code}):\n${output.slice(-20).join('\n')}`,
        );
        reject(err);
        for (const p of pending.values()) p.reject(err);
        pending.clear();
      });
    },
  );
  const info = await Promise.race([
    ready,
    sleep(30_000).then(() =>
      Promise.reject(new Error(`simulator did not start:\n${output.join('\n')}`)),
    ),
  ]);
  const rpc = <T>(cmd: string, arg?: unknown): Promise<T> =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      proc.send({ id, cmd, arg });
    });
  return {
    ...info,
    setLatency: (ms) => rpc('setFaults', { latencyMs: ms }),
    calls: (since = 0) => rpc('calls', { since }),
    warm: async (queries) => {
      const statuses = await rpc<number[]>('warm', { queries });
      const bad = statuses.filter((s) => s !== 200);
      if (bad.length > 0)
        throw new Error(`simulator answered ${bad.join(', ')} to a warm-up render`);
    },
    canned: (png) => rpc('canned', { png: png?.toString('base64') }),
    cpuMs: async () => {
      const u = await rpc<{ userMs: number; systemMs: number }>('cpu');
      return u.userMs + u.systemMs;
    },
    stop: async () => {
      const done = exited(proc);
      if (proc.connected) proc.disconnect();
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await done;
      clearTimeout(timer);
    },
  };
}

// --- the service ----------------------------------------------------------------------------

export interface ServiceProc {
  url: string;
  pid: number;
  cachePath: string;
  /** Monotonic ms when the process was spawned. */
  spawnedAt: number;
  output: string[];
  /** Throws (with the last lines it printed) if the process has exited. */
  assertAlive(): void;
  stop(): Promise<number | string>;
}

export interface ServiceOptions {
  sim: SimControl;
  cachePath: string;
  fromSource: boolean;
  env?: Record<string, string>;
  /** Directory for a V8 CPU profile written at exit (node --cpu-prof). */
  profileDir?: string;
  /** Resolve once it listens (default) or right after spawning (cold start measures readiness itself). */
  wait?: boolean;
}

export async function startService(opts: ServiceOptions): Promise<ServiceProc> {
  const port = await freePort();
  const cwd = tempDir('kic-bench-cwd-'); // no developer .env leaks in
  const args = [
    ...(opts.profileDir ? ['--cpu-prof', '--cpu-prof-dir', opts.profileDir] : []),
    ...(opts.fromSource
      ? ['--import', TSX, path.join(ROOT, 'src/server.ts')]
      : [path.join(ROOT, 'dist/server.js')]),
  ];
  const spawnedAt = monoMs();
  const proc = spawn(process.execPath, args, {
    cwd,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      CACHE_PATH: opts.cachePath,
      KENTIK_API_URL: opts.sim.url,
      KT_AUTH_EMAIL: opts.sim.email,
      KT_AUTH_TOKEN: opts.sim.token,
      LOG_LEVEL: 'warn',
      // Benchmarks measure throughput, not admission control: no per-client limit or queue cap.
      RATE_LIMIT_MAX: '0',
      MAX_PENDING: '1000000',
      MAX_CONNECTIONS: '100000',
      MAX_CONNECTIONS_PER_ADDRESS: '0',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = collect(proc);
  const done = exited(proc).then((code) => {
    rmSync(cwd, { recursive: true, force: true });
    return code;
  });
  const url = `http://127.0.0.1:${port}`;
  const service: ServiceProc = {
    url,
    pid: proc.pid ?? -1,
    cachePath: opts.cachePath,
    spawnedAt,
    output,
    assertAlive: () => {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(
          `the service exited (${proc.exitCode ?? proc.signalCode}):\n${output.slice(-20).join('\n')}`,
        );
      }
    },
    stop: async () => {
      await stopProcess(proc);
      return done;
    },
  };
  if (opts.wait === false) return service;
  let dead = false;
  void done.then(() => (dead = true));
  await waitFor(
    'the service to listen',
    async () => {
      if (dead) throw new Error(`the service exited:\n${output.slice(-20).join('\n')}`);
      return (await request(`${url}/healthz`, { timeoutMs: 2000 })).status === 200
        ? true
        : undefined;
    },
    60_000,
    25,
  ).catch((err: Error) => {
    proc.kill('SIGKILL');
    throw new Error(`${err.message}\n${output.slice(-20).join('\n')}`);
  });
  return service;
}

/** Resident set size of a process in bytes (Linux /proc), or undefined elsewhere. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, ms) a process has used so far (Linux /proc), or undefined. */
export function cpuMsOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
    return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

// --- references: nginx and a bare Node.js server --------------------------------------------

export interface Reference {
  url: string;
  version: string;
  stop(): Promise<void>;
}

/** nginx, one worker, serving `bytes` from disk as /image.png; undefined when nginx is not installed. */
export async function startNginx(bytes: Buffer, mime: string): Promise<Reference | undefined> {
  return runNginx('/image.png', (dir) => {
    mkdirSync(path.join(dir, 'www'), { mode: 0o755 });
    writeFileSync(path.join(dir, 'www/image.png'), bytes, { mode: 0o644 });
    return `
  types { ${mime} png; }
  server {
    listen 127.0.0.1:PORT;
    root ${dir}/www;
    location / {
      add_header Cache-Control "public, max-age=3600";
      add_header X-Content-Type-Options nosniff;
    }
  }`;
  });
}

/**
 * nginx, one worker, as the README's reverse proxy in front of the service, plus a proxy_cache:
 * the service's Cache-Control (public, max-age = seconds left) lets nginx keep each image until its
 * id expires. `path` is the image's path on the service.
 */
export async function startNginxCache(
  serviceUrl: string,
  imagePath: string,
): Promise<Reference | undefined> {
  return runNginx(imagePath, (dir) => {
    mkdirSync(path.join(dir, 'cache'));
    chmodSync(path.join(dir, 'cache'), 0o777); // written by the unprivileged workers
    return `
  proxy_cache_path ${dir}/cache keys_zone=images:1m max_size=256m;
  upstream kic { server ${new URL(serviceUrl).host}; keepalive 64; }
  server {
    listen 127.0.0.1:PORT;
    location / {
      proxy_pass http://kic;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache images;
      proxy_cache_lock on;
    }
  }`;
  });
}

/** Writes a config around `http` (PORT stands for the port) and starts nginx in the foreground. */
async function runNginx(
  urlPath: string,
  http: (dir: string) => string,
): Promise<Reference | undefined> {
  const bin = await onPath('nginx');
  if (!bin) return undefined;
  const version = (spawnSync(bin, ['-v'], { encoding: 'utf8' }).stderr ?? '')
    .trim()
    .replace(/^nginx version:\s*/, '');
  const dir = tempDir('kic-bench-nginx-');
  chmodSync(dir, 0o755); // workers drop root privileges and must still read the files
  mkdirSync(path.join(dir, 'tmp'));
  chmodSync(path.join(dir, 'tmp'), 0o777); // proxy buffers spill here, written by the workers
  const port = await freePort();
  // Tuned the way one would tune it for exactly this job: sendfile, cached file handles, no log.
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    `daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  open_file_cache max=64 inactive=60s;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
${http(dir).replaceAll('PORT', String(port))}
}
`,
  );
  const proc = spawn(bin, ['-p', `${dir}/`, '-c', `${dir}/nginx.conf`, '-e', `${dir}/error.log`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = collect(proc);
  const url = `http://127.0.0.1:${port}${urlPath}`;
  try {
    await waitFor(
      'nginx to answer',
      async () => ((await request(url, { timeoutMs: 2000 })).status === 200 ? true : undefined),
      15_000,
      25,
    );
  } catch (err) {
    proc.kill('SIGKILL');
    const log = existsSync(`${dir}/error.log`) ? readFileSync(`${dir}/error.log`, 'utf8') : '';
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `nginx did not start: ${(err as Error).message}\n${output.join('\n')}\n${log}`,
      { cause: err },
    );
  }
  return {
    url,
    version,
    stop: async () => {
      await stopProcess(proc, 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A bare node:http server answering `bytes` from memory: the ceiling for any Node.js service. */
export async function startBareNode(bytes: Buffer, mime: string): Promise<Reference> {
  const dir = tempDir('kic-bench-bare-');
  writeFileSync(path.join(dir, 'image'), bytes);
  const port = await freePort();
  const proc = spawn(
    process.execPath,
    ['--import', TSX, path.join(ROOT, 'bench/lib/bare-server.ts')],
    {
      env: {
        ...process.env,
        BARE_PORT: String(port),
        BARE_FILE: path.join(dir, 'image'),
        BARE_MIME: mime,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const output = collect(proc);
  const url = `http://127.0.0.1:${port}/image`;
  await waitFor(
    'the bare Node.js server',
    async () => ((await request(url, { timeoutMs: 2000 })).status === 200 ? true : undefined),
    30_000,
    25,
  ).catch((err: Error) => {
    proc.kill('SIGKILL');
    throw new Error(`${err.message}\n${output.join('\n')}`);
  });
  return {
    url,
    version: process.version,
    stop: async () => {
      await stopProcess(proc, 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
