import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A real redis-server for one test: on a free port, in its own temporary directory, without
 * persistence unless asked for. Minimal on purpose; the shared process-start module for tests and
 * benches can fold this in.
 */
export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  proc: ChildProcess;
  /** SIGTERM (or the given signal) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and directory (AOF data, if any, is loaded). */
  restart(): Promise<void>;
  /** Runs redis-cli against it and returns stdout. */
  cli(...args: string[]): Promise<string>;
}

export interface RedisServerOptions {
  password?: string;
  appendonly?: boolean;
}

const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kic-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    opts.appendonly ? 'yes' : 'no',
    ...(opts.appendonly ? ['--appendfsync', 'always'] : []),
    ...(opts.password ? ['--requirepass', opts.password] : []),
  ];
  const auth = opts.password ? `:${encodeURIComponent(opts.password)}@` : '';
  const server: RedisServer = {
    port,
    url: `redis://${auth}127.0.0.1:${port}`,
    dir,
    proc: undefined as unknown as ChildProcess,
    async stop(signal = 'SIGTERM') {
      const p = server.proc;
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      p.kill(signal);
      await exited;
    },
    async restart() {
      await server.stop();
      server.proc = await launch(args);
    },
    async cli(...cmd: string[]) {
      const p = spawn('redis-cli', [
        '-p',
        String(port),
        ...(opts.password ? ['--no-auth-warning', '-a', opts.password] : []),
        ...cmd,
      ]);
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await new Promise((r) => p.once('exit', r));
      return out;
    },
  };
  server.proc = await launch(args);
  servers.add(server);
  return server;
}

const servers = new Set<RedisServer>();

/** Stops every server this file started and removes their directories. */
export async function stopAllRedis(): Promise<void> {
  for (const s of servers) {
    await s.stop('SIGKILL').catch(() => {});
    rmSync(s.dir, { recursive: true, force: true });
  }
  servers.clear();
}

function launch(args: string[]): Promise<ChildProcess> {
  const proc = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) {
        proc.stdout!.off('data', onData);
        proc.stdout!.resume();
        resolve(proc);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.resume();
    proc.once('error', reject);
    proc.once('exit', (code) =>
      reject(new Error(`redis-server exited (${code}) before it was ready:\n${out.slice(-2000)}`)),
    );
  });
}
