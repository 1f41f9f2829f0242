import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { onPath } from './util.ts';

/** Where autocannon's idReplacement puts a unique id; wrk gets the same marker replaced by a counter. */
export const UNIQUE_MARKER = '[<id>]';

export interface LoadSpec {
  url: string;
  method?: 'GET' | 'POST';
  /** JSON body; with `unique`, every request replaces UNIQUE_MARKER in it with a new value. */
  body?: string;
  unique?: boolean;
  connections: number;
  durationSec: number;
  /** Ends the run early; the result covers what ran. */
  signal?: AbortSignal;
}

export interface LoadResult {
  tool: LoadTool['name'];
  requests: number;
  durationSec: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Connection errors and timeouts. */
  errors: number;
  /** Answers outside 2xx (wrk: outside 2xx/3xx). */
  non2xx: number;
}

export interface LoadTool {
  name: 'wrk' | 'autocannon';
  version: string;
  run(spec: LoadSpec): Promise<LoadResult>;
}

/** wrk when it is installed (unless told otherwise), else autocannon from npm. */
export async function pickLoadTool(
  prefer: 'auto' | 'wrk' | 'autocannon',
  wrkThreads: number,
): Promise<LoadTool> {
  const wrk = prefer === 'autocannon' ? undefined : await onPath('wrk');
  if (prefer === 'wrk' && !wrk) throw new Error('--loadgen wrk: wrk is not on the PATH');
  if (wrk)
    return wrkTool(
      wrk,
      wrkThreads,
      /wrk\s+(\S+)/.exec(await spawnText(wrk, ['-v']))?.[1] ?? 'unknown',
    );
  const { createRequire } = await import('node:module');
  const require = createRequire(import.meta.url);
  const version = (require('autocannon/package.json') as { version: string }).version;
  // autocannon appends every body chunk to a string (`body += chunk`) in case a body check wants it.
  // For a 60 KB image that string building is most of its CPU: ~500 instead of ~9000 req/s on the
  // 2-core machine. Nothing here checks bodies, so the queue drops them; status and bytes still count.
  const queue = require('autocannon/lib/pipelinedRequestsQueue.js') as {
    prototype: { addBody(data: unknown): void };
  };
  queue.prototype.addBody = () => {};
  return {
    name: 'autocannon',
    version,
    async run(spec) {
      const run = autocannon({
        url: spec.url,
        method: spec.method ?? 'GET',
        connections: spec.connections,
        duration: spec.durationSec,
        timeout: 10,
        ...(spec.body !== undefined
          ? { body: spec.body, headers: { 'content-type': 'application/json' } }
          : {}),
        ...(spec.unique ? { idReplacement: true } : {}),
      });
      spec.signal?.addEventListener('abort', () => run.stop(), { once: true });
      const r = await run;
      const requests = r.requests.total;
      return {
        tool: 'autocannon',
        requests,
        durationSec: r.duration,
        rps: requests / r.duration,
        p50Ms: r.latency.p50,
        p99Ms: r.latency.p99,
        maxMs: r.latency.max,
        errors: r.errors + r.timeouts,
        non2xx: r.non2xx,
      };
    },
  };
}

function wrkTool(bin: string, threads: number, version: string): LoadTool {
  return {
    name: 'wrk',
    version,
    async run(spec) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'kic-bench-wrk-'));
      try {
        const lua = [`wrk.method = "${spec.method ?? 'GET'}"`];
        if (spec.body !== undefined) {
          lua.push('wrk.headers["Content-Type"] = "application/json"');
          if (spec.unique) {
            const [prefix, ...rest] = spec.body.split(UNIQUE_MARKER);
            writeFileSync(path.join(dir, 'prefix'), prefix ?? '');
            writeFileSync(path.join(dir, 'suffix'), rest.join(UNIQUE_MARKER));
            lua.push(
              `local function slurp(p) local f = assert(io.open(p, "rb")); local s = f:read("*a"); f:close(); return s end`,
              `local prefix, suffix = slurp("${dir}/prefix"), slurp("${dir}/suffix")`,
              `local nonce, counter = "${randomBytes(6).toString('hex')}", 0`,
              `local headers = { ["Content-Type"] = "application/json" }`,
              `function setup(thread) thread:set("tid", tostring(math.random(1, 1e9))) end`,
              `function request() counter = counter + 1; return wrk.format(nil, nil, headers, prefix .. nonce .. "-" .. (tid or "0") .. "-" .. counter .. suffix) end`,
            );
          } else {
            writeFileSync(path.join(dir, 'body'), spec.body);
            lua.push(
              `local f = assert(io.open("${dir}/body", "rb")); wrk.body = f:read("*a"); f:close()`,
            );
          }
        }
        lua.push(
          'function done(s, lat, _)',
          '  io.write(string.format(\'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p99":%d,"max":%d}\\n\',',
          '    s.requests, s.duration, s.errors.connect, s.errors.read, s.errors.write, s.errors.status, s.errors.timeout,',
          '    lat:percentile(50), lat:percentile(99), lat.max))',
          'end',
        );
        writeFileSync(path.join(dir, 'script.lua'), lua.join('\n') + '\n');
        const args = [
          '-t',
          String(Math.min(threads, spec.connections)),
          '-c',
          String(spec.connections),
          '-d',
          `${Math.max(1, Math.round(spec.durationSec))}s`,
          '--timeout',
          '10s',
          '-s',
          path.join(dir, 'script.lua'),
          spec.url,
        ];
        const text = await spawnText(bin, args, spec.signal);
        const line = text.split('\n').find((l) => l.startsWith('WRKJSON '));
        if (!line) throw new Error(`wrk printed no summary:\n${text}`);
        const j = JSON.parse(line.slice('WRKJSON '.length)) as Record<string, number>;
        const durationSec = j.duration_us! / 1e6;
        return {
          tool: 'wrk',
          requests: j.requests!,
          durationSec,
          rps: j.requests! / durationSec,
          p50Ms: j.p50! / 1000,
          p99Ms: j.p99! / 1000,
          maxMs: j.max! / 1000,
          errors: j.connect! + j.read! + j.write! + j.timeout!,
          non2xx: j.status!,
        };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

function spawnText(bin: string, args: string[], signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    // wrk stops on SIGINT and still prints its summary.
    signal?.addEventListener('abort', () => p.kill('SIGINT'), { once: true });
    let text = '';
    p.stdout.setEncoding('utf8').on('data', (c: string) => (text += c));
    p.stderr.setEncoding('utf8').on('data', (c: string) => (text += c));
    p.on('error', reject);
    p.on('exit', (code) =>
      code === 0 || args[0] === '-v'
        ? resolve(text)
        : reject(new Error(`wrk exited ${code}:\n${text}`)),
    );
  });
}
