/**
 * Reference servers the benchmarks measure the service against, started like every other process
 * (process.ts): nginx (one worker, sendfile) and a bare node:http server, serving the same bytes;
 * and a bare pass-through cache (bare-cache.ts) fetching from the same upstream.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startChild } from './process.ts';
import { TSX } from './service.ts';
import { freePort, onPath, ROOT, tempDir } from './tmp.ts';

/** Resolves once `url` answers 200, or throws after `timeoutMs`. */
async function answers(url: string, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: string;
  for (;;) {
    if (!alive()) throw new Error('it exited');
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline)
      throw new Error(`no 200 from ${url} within ${timeoutMs} ms (${last})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface Reference {
  url: string;
  version: string;
  /** The serving process, when it is one (for its CPU time); nginx has a master and a worker. */
  pid?: number;
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
  const child = startChild(
    bin,
    ['-p', `${dir}/`, '-c', `${dir}/nginx.conf`, '-e', `${dir}/error.log`],
    { name: 'nginx' },
  );
  const output = child.output;
  const url = `http://127.0.0.1:${port}${urlPath}`;
  try {
    await answers(url, 15_000, child.alive);
  } catch (err) {
    await child.stop('SIGKILL');
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
      await child.stop('SIGTERM', 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The bare node:http server (bare-image.ts) in a process of its own, answering `bytes` with
 * `headers`: the service's own headers for that image (a flat list, see answerHeaders), so the
 * comparison is of the same answer.
 */
export async function startBareNode(bytes: Buffer, headers: readonly string[]): Promise<Reference> {
  const dir = tempDir('kic-bench-bare-');
  writeFileSync(path.join(dir, 'image'), bytes);
  const port = await freePort();
  const child = startChild(
    process.execPath,
    ['--import', TSX, path.join(ROOT, 'test/support/bare-server.ts')],
    {
      env: {
        ...process.env,
        BARE_PORT: String(port),
        BARE_FILE: path.join(dir, 'image'),
        BARE_HEADERS: JSON.stringify(headers),
      },
      name: 'the bare Node.js server',
    },
  );
  const url = `http://127.0.0.1:${port}/image`;
  await answers(url, 30_000, child.alive).catch(async (err: Error) => {
    await child.stop('SIGKILL');
    throw new Error(`the bare Node.js server: ${err.message}\n${child.output.join('\n')}`);
  });
  return {
    url,
    version: process.version,
    pid: child.pid,
    stop: async () => {
      await child.stop('SIGTERM', 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The bare pass-through cache (bare-cache.ts) in a process of its own, fetching from the same
 * upstream with the same credentials as the service (`upstream`: the simulator behind its
 * timestamping proxy). `fsync: false` writes the same files without any fsync.
 */
export async function startBareCache(
  upstream: { url: string; email: string; token: string },
  opts: { fsync: boolean },
): Promise<Reference> {
  const dir = tempDir('kic-bench-bare-cache-');
  const child = startChild(
    process.execPath,
    ['--import', TSX, path.join(ROOT, 'test/support/bare-cache.ts')],
    {
      env: {
        ...process.env,
        BARE_CACHE_DIR: dir,
        BARE_FSYNC: opts.fsync ? 'on' : 'off',
        KENTIK_API_URL: upstream.url,
        KT_AUTH_EMAIL: upstream.email,
        KT_AUTH_TOKEN: upstream.token,
      },
      name: 'the bare pass-through cache',
    },
  );
  const listening = await child
    .waitForLine((l) => l.startsWith('listening '), 30_000, 'listening line')
    .catch(async (err: Error) => {
      await child.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw err;
    });
  return {
    url: listening.slice('listening '.length),
    version: process.version,
    pid: child.pid,
    stop: async () => {
      await child.stop('SIGTERM', 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
