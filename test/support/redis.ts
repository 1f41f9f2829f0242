/**
 * A real redis-server (the Debian package) for tests and benchmarks: its own free port and
 * temp dir, no persistence unless asked (`aof`), an optional password (`requirepass`), and the
 * failures the cluster must survive: kill -9, a restart on the same port and dir (with its data,
 * or empty), commands through redis-cli (`CLIENT KILL TYPE pubsub`, `INFO memory`, `FLUSHALL`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startChild, type Child } from './process.ts';
import { freePort, removeDir, tempDir } from './tmp.ts';

export interface RedisOptions {
  /** Set `requirepass`; the URL then carries it (a secret: see no-secret.setup.ts). */
  password?: string;
  /** Append-only file persistence (appendfsync everysec, Redis's default): data survives a restart. */
  aof?: boolean;
  /** Extra redis.conf lines, e.g. ['maxmemory 64mb', 'maxmemory-policy noeviction']. */
  config?: string[];
}

export interface RedisServer {
  host: string;
  port: number;
  password: string | undefined;
  /** Its working directory (config, and the AOF when persistent). */
  dir: string;
  /** REDIS_URL for the service: redis://[:password@]127.0.0.1:port */
  url: string;
  pid(): number;
  /** Every line redis-server printed (all of its runs). */
  readonly output: string[];
  /** Runs one command through redis-cli and returns its output (raw, trimmed). */
  cli(...args: string[]): Promise<string>;
  /** `INFO section` as key → value. */
  info(section?: string): Promise<Record<string, string>>;
  /** kill -9 by default (no shutdown, no final save), or another signal; waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** The running process (changes with each restart). */
  readonly proc: ChildProcess | undefined;
  /** Starts it again on the same port and dir (after kill/shutdown); `empty` deletes its data first. */
  restart(opts?: { empty?: boolean }): Promise<void>;
  /** Stops it (if running) and deletes its dir. */
  stop(): Promise<void>;
}

const running = new Set<Child>();
process.once('exit', () => {
  // A test run that died half way must not leave redis-servers behind.
  for (const c of running) if (c.alive()) c.proc.kill('SIGKILL');
});

export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  const dir = tempDir('kic-redis-');
  const port = await freePort();
  const host = '127.0.0.1';
  const conf = path.join(dir, 'redis.conf');
  writeFileSync(
    conf,
    [
      `bind ${host}`,
      `port ${port}`,
      `dir ${dir}`,
      'daemonize no',
      'logfile ""',
      'save ""',
      `appendonly ${opts.aof ? 'yes' : 'no'}`,
      'appendfsync everysec',
      ...(opts.password ? [`requirepass ${opts.password}`] : []),
      ...(opts.config ?? []),
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const runs: Child[] = [];
  let child: Child | undefined;

  const launch = async (): Promise<void> => {
    const c = startChild('redis-server', [conf], { cwd: dir, name: 'redis-server' });
    running.add(c);
    void c.exited.then(() => running.delete(c));
    runs.push(c);
    child = c;
    await c.waitForLine((l) => l.includes('Ready to accept connections'), 30_000, 'readiness');
  };

  const cli = (...args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      const p = spawn('redis-cli', ['-h', host, '-p', String(port), ...args], {
        // REDISCLI_AUTH rather than -a: the password stays off the command line.
        env: {
          PATH: process.env.PATH ?? '',
          ...(opts.password ? { REDISCLI_AUTH: opts.password } : {}),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      p.on('error', reject);
      p.on('exit', (code) =>
        code === 0 && !/^(ERR|WRONGPASS|NOAUTH)/.test(out)
          ? resolve(out.trim())
          : reject(new Error(`redis-cli ${args.join(' ')}: ${(err || out).trim()}`)),
      );
    });

  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (!child) return;
    await child.stop(signal, 10_000);
  };

  await launch();
  return {
    host,
    port,
    password: opts.password,
    dir,
    url: `redis://${opts.password ? `:${encodeURIComponent(opts.password)}@` : ''}${host}:${port}`,
    pid: () => child?.pid ?? -1,
    get proc() {
      return child?.proc;
    },
    get output() {
      return runs.flatMap((c) => c.output);
    },
    cli,
    info: async (section = '') => {
      const text = await cli('INFO', ...(section ? [section] : []));
      const out: Record<string, string> = {};
      for (const line of text.split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1);
      }
      return out;
    },
    kill,
    restart: async ({ empty = false } = {}) => {
      if (child?.alive()) await kill();
      if (empty) {
        rmSync(path.join(dir, 'appendonlydir'), { recursive: true, force: true });
        rmSync(path.join(dir, 'dump.rdb'), { force: true });
      }
      await launch();
    },
    stop: async () => {
      if (child?.alive()) await child.stop('SIGTERM', 5000);
      removeDir(dir);
    },
  };
}
