/**
 * Reruns the attacks of issue 9 against a service on loopback and prints what happened: a POST
 * flood, upstream answers trickled slowly, two processes on one CACHE_PATH, and slowloris sockets.
 * Every attack is bounded (seconds, sockets); nothing leaves 127.0.0.1. Not a test: its figures go
 * in reports, beside the same run against an older build.
 *
 *   npx tsx bench/attacks.ts [--server path/to/src/server.ts] [--only flood,drip,two,slowloris]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { sampleRequest } from 'kentik-simulator';

const ROOT = path.resolve(import.meta.dirname, '..');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href;
const { values: args } = parseArgs({
  options: {
    server: { type: 'string', default: path.join(ROOT, 'src/server.ts') },
    only: { type: 'string', default: 'flood,drip,two,slowloris' },
    /** The node binary to run the service with (e.g. a Node 20, for its AbortSignal.any bug). */
    node: { type: 'string', default: process.execPath },
  },
});
const only = new Set(args.only!.split(','));
const LEGIT = 'legit-dashboard-key-0123456789';
const FLOOD = 'flooder-key-0123456789abcdefgh';

interface Svc {
  url: string;
  proc: ChildProcess;
  output: string[];
  exited: Promise<number | string>;
  stop(): Promise<unknown>;
}

const tmp = (p: string): string => mkdtempSync(path.join(os.tmpdir(), p));
const query = (n: string | number): unknown => sampleRequest({ query_title: `attack ${n}` });

async function start(
  sim: Simulator,
  env: Record<string, string>,
  cachePath = tmp('kic-attack-'),
): Promise<Svc> {
  const proc = spawn(args.node!, ['--import', TSX, args.server!], {
    cwd: tmp('kic-attack-cwd-'),
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: '0',
      CACHE_PATH: cachePath,
      KENTIK_API_URL: sim.url,
      KT_AUTH_EMAIL: sim.email,
      KT_AUTH_TOKEN: sim.token,
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | string>((r) =>
    proc.once('exit', (code, sig) => r(code ?? sig ?? -1)),
  );
  const url = await new Promise<string>((resolve) => {
    let buf = '';
    const on = (d: Buffer): void => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        output.push(l);
        const m = /Server listening at (http:\/\/[^"]+)/.exec(l);
        if (m) resolve(m[1]!);
      }
    };
    proc.stdout!.on('data', on);
    proc.stderr!.on('data', on);
    void exited.then(() => resolve(''));
  });
  return {
    url,
    proc,
    output,
    exited,
    stop: () => (proc.exitCode === null ? (proc.kill('SIGKILL'), exited) : exited),
  };
}

async function post(
  url: string,
  q: unknown,
  key?: string,
): Promise<{ status: number; id?: string }> {
  try {
    const r = await fetch(`${url}/requests`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(key ? { authorization: `Bearer ${key}` } : {}),
      },
      body: JSON.stringify({ api_query: q }),
      signal: AbortSignal.timeout(10_000),
    });
    const j = (await r.json()) as { id?: string };
    return { status: r.status, id: j.id };
  } catch {
    return { status: 0 };
  }
}

/** ms until GET /image/{id} answers (each GET waits up to ENTRY_WAIT_TIMEOUT), or 'gave up'. */
async function timeToImage(url: string, id: string, maxMs: number): Promise<string> {
  const t0 = performance.now();
  while (performance.now() - t0 < maxMs) {
    try {
      const r = await fetch(`${url}/image/${id}`, {
        signal: AbortSignal.timeout(Math.max(1, Math.round(maxMs - (performance.now() - t0)))),
      });
      const body = Buffer.from(await r.arrayBuffer());
      // 504 "Image pending" means: still waiting after ENTRY_WAIT_TIMEOUT, ask again.
      if (r.status !== 504 || !body.includes('Image pending'))
        return `${r.status}${r.status === 200 ? '' : ` ${body.toString().slice(0, 80)}`} after ${Math.round(performance.now() - t0)} ms`;
    } catch (err) {
      if ((err as Error).name !== 'TimeoutError') return `GET failed: ${(err as Error).message}`;
      break;
    }
  }
  return `no image within ${maxMs / 1000} s`;
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

async function flood(sim: Simulator): Promise<void> {
  sim.reset();
  sim.setFaults({ latencyMs: 500 });
  const svc = await start(sim, {
    API_KEYS: `legit:${LEGIT},flooder:${FLOOD}`,
    ENTRY_WAIT_TIMEOUT: '60',
  });
  const counts: Record<number, number> = {};
  let n = 0;
  const until = performance.now() + 5000;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (performance.now() < until) {
        const r = await post(svc.url, query(`flood-${n++}`), FLOOD);
        counts[r.status] = (counts[r.status] ?? 0) + 1;
      }
    }),
  );
  const queued = await metric(svc.url, 'kic_upstream_queued');
  const legit = await post(svc.url, query('legit'), LEGIT);
  const took = legit.id ? await timeToImage(svc.url, legit.id, 120_000) : `POST ${legit.status}`;
  console.log(
    `flood: 5 s x 50 connections of unique POSTs (${n} sent): answers ${JSON.stringify(counts)}; ` +
      `upstream queue after it ${queued} (≈ ${Math.round((queued * 0.5) / 4)} s of Kentik time at 0.5 s/call, 4 at once); ` +
      `legitimate client (own key): POST ${legit.status}, image ${took}`,
  );
  await svc.stop();
}

async function drip(sim: Simulator): Promise<void> {
  sim.reset();
  const svc = await start(sim, {
    KENTIK_API_TIMEOUT: '3',
    KENTIK_API_RETRIES: '0',
    ENTRY_WAIT_TIMEOUT: '60',
  });
  sim.script(Array.from({ length: 4 }, () => ({ kind: 'drip' as const, bytesPerSecond: 20 })));
  const ids = await Promise.all(
    [0, 1, 2, 3].map(async (i) => (await post(svc.url, query(`drip-${i}`))).id!),
  );
  const normal = (await post(svc.url, query('after-drip'))).id!;
  const [first, other] = await Promise.all([
    timeToImage(svc.url, ids[0]!, 20_000),
    timeToImage(svc.url, normal, 20_000),
  ]);
  console.log(
    `slow drip: 4 answers trickled at 20 B/s, KENTIK_API_TIMEOUT=3: first trickled fetch answered ${first}; a normal chart queued behind them: ${other}`,
  );
  await svc.stop();
  sim.reset();
}

async function two(sim: Simulator): Promise<void> {
  sim.reset();
  const cachePath = tmp('kic-attack-two-');
  // No memory cache, so what the first serves comes from its files.
  const a = await start(sim, { MEMORY_CACHE_BYTES: '0' }, cachePath);
  const t0 = performance.now();
  const b = await start(sim, { CACHE_MAINTENANCE_PERIOD: '0.2' }, cachePath);
  const bStarted = b.url !== '';
  const bExit = bStarted
    ? 'started'
    : `exited ${await b.exited} after ${Math.round(performance.now() - t0)} ms`;
  // The first goes on working: 20 new charts, each answered 200 once.
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) ids.push((await post(a.url, query(`two-${i}`))).id!);
  let answered = 0;
  const outcomes = new Set<string>();
  for (const id of ids) {
    const got = await timeToImage(a.url, id, 10_000);
    if (got.startsWith('200')) answered++;
    else outcomes.add(got.slice(0, 100));
  }
  if (outcomes.size) console.log('  other answers:', [...outcomes].join(' | '));
  // Let the second one's maintenance run (orphan scan on its first pass, then every 10th).
  await new Promise((r) => setTimeout(r, 3000));
  let served = 0;
  for (const id of ids) {
    const r = await fetch(`${a.url}/image/${id}`);
    await r.arrayBuffer();
    if (r.status === 200) served++;
  }
  const blobs = readdirSync(path.join(cachePath, 'blobs')).length;
  const said = b.output.find((l) => l.includes('in use by')) ?? '';
  console.log(
    `two processes: second one ${bExit}${said ? ` saying "${said.slice(0, 200)}…"` : ''}; ` +
      `the first answered ${answered}/20 new charts 200, 3 s later serves ${served}/20, ${blobs} blob files on disk`,
  );
  await b.stop();
  await a.stop();
  rmSync(cachePath, { recursive: true, force: true });
}

async function slowloris(sim: Simulator, sockets: number): Promise<void> {
  sim.reset();
  const svc = await start(sim, {});
  const port = Number(new URL(svc.url).port);
  const opened: net.Socket[] = [];
  const closedAt: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < sockets; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.resume();
    s.once('connect', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: '));
    s.once('close', () => closedAt.push(performance.now() - t0));
    opened.push(s);
  }
  const drip = setInterval(() => {
    for (const s of opened) if (s.writable) s.write('a');
  }, 1000);
  const health: number[] = [];
  let healthFails = 0;
  const end = t0 + 15_000;
  while (performance.now() < end) {
    const h0 = performance.now();
    // The legitimate client comes from another address (127.0.0.2: all of 127/8 is loopback).
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get(
        { host: '127.0.0.1', port, path: '/healthz', localAddress: '127.0.0.2', agent: false },
        (r) => {
          r.resume();
          r.on('end', () => resolve(r.statusCode === 200));
        },
      );
      req.setTimeout(2000, () => req.destroy());
      req.on('error', () => resolve(false));
    });
    if (ok) health.push(performance.now() - h0);
    else healthFails++;
    await new Promise((r) => setTimeout(r, 250));
  }
  clearInterval(drip);
  const open = opened.filter((s) => !s.destroyed).length;
  const cut = closedAt.filter((t) => t > 1000);
  const early = closedAt.length - cut.length;
  for (const s of opened) s.destroy();
  health.sort((x, y) => x - y);
  console.log(
    `slowloris: ${sockets} sockets sending one header byte a second for 15 s: ${early} refused at once, ` +
      `${cut.length} cut off (median at ${cut.length ? Math.round(cut.sort((x, y) => x - y)[cut.length >> 1]! / 100) / 10 : '-'} s), ${open} still open at 15 s; ` +
      `/healthz meanwhile: ${health.length} ok (median ${Math.round(health[health.length >> 1] ?? NaN)} ms, max ${Math.round(health.at(-1) ?? NaN)} ms), ${healthFails} failed`,
  );
  await svc.stop();
}

const sim = await startSimulator({ email: 'attack@example.com', token: 'attack-token-SECRET' });
try {
  console.log(`server: ${path.relative(process.cwd(), args.server!)} on ${args.node}`);
  if (only.has('flood')) await flood(sim);
  if (only.has('drip')) await drip(sim);
  if (only.has('two')) await two(sim);
  if (only.has('slowloris')) {
    await slowloris(sim, 400);
    await slowloris(sim, 1000);
  }
} finally {
  await sim.close();
}
