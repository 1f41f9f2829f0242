/**
 * Child process of the benchmark: the Kentik simulator plus a thin timestamping proxy in front of
 * it. The service under test talks to the proxy, which records when each chart call arrived and
 * when its answer was handed back (CLOCK_MONOTONIC, comparable with the parent's clock); this is
 * how "within 100 ms after the upstream answer" and "added latency" are measured. The simulator
 * renders charts with tens of ms of CPU each, so it lives in its own process, away from the load
 * generator. Controlled by the parent over IPC (see SimControl in simulator.ts).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { queryHash } from '../../src/domain/hash.ts';
import { CHART_PATH, startSimulator } from 'kentik-simulator';
import { monoMs } from './clock.ts';

export interface UpstreamCall {
  hash: string | null;
  /** Monotonic ms when the call reached the proxy, and when its complete answer was written back. */
  start: number;
  end: number;
  status: number;
}

const latencyMs = Number(process.env.SIM_LATENCY_MS ?? 0);
const sim = await startSimulator({
  faults: { latencyMs },
  ...(process.env.SIM_EMAIL ? { email: process.env.SIM_EMAIL } : {}),
  ...(process.env.SIM_TOKEN ? { token: process.env.SIM_TOKEN } : {}),
});
const simUrl = new URL(sim.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const calls: UpstreamCall[] = [];
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'content-length']);

/**
 * Canned mode: chart calls are answered here with a pre-rendered PNG (after the simulator's
 * latency), never reaching the simulator, whose chart.js rendering needs more than a core of this
 * machine at full speed (real Kentik renders on its own machines). Each answer gets a counter appended after the PNG's IEND
 * chunk, so every call yields different bytes and a new blob to store, as different charts would.
 */
let canned: { prefix: string; counter: number } | undefined;
/** The simulator's latency (setFaults), which canned answers keep too. */
let cannedDelayMs = latencyMs;

function cannedAnswer(): string {
  const c = canned!;
  const tail = Buffer.alloc(12);
  tail.writeUInt32BE(process.pid, 0);
  tail.writeDoubleBE(c.counter++, 4);
  return `{"dataUri":"data:image/png;base64,${c.prefix}${tail.toString('base64')}"}`;
}

const proxy = http.createServer((req, res) => {
  const start = monoMs();
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    if (canned && req.method === 'POST' && req.url?.startsWith(CHART_PATH)) {
      const answer = cannedAnswer();
      let hash: string | null = null;
      try {
        hash = queryHash(JSON.parse(body.toString('utf8')));
      } catch {
        // not JSON
      }
      const send = (): void => {
        calls.push({ hash, start, end: monoMs(), status: 200 });
        res.writeHead(200, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': Buffer.byteLength(answer),
        });
        res.end(answer);
      };
      if (cannedDelayMs > 0) setTimeout(send, cannedDelayMs);
      else send();
      return;
    }
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (v !== undefined && !HOP.has(k)) headers[k] = v;
    headers['content-length'] = String(body.length);
    const up = http.request(
      {
        host: simUrl.hostname,
        port: simUrl.port,
        path: req.url,
        method: req.method,
        headers,
        agent,
      },
      (upRes) => {
        const parts: Buffer[] = [];
        upRes.on('data', (c: Buffer) => parts.push(c));
        upRes.on('end', () => {
          const answer = Buffer.concat(parts);
          const out: Record<string, string | string[]> = {};
          for (const [k, v] of Object.entries(upRes.headers))
            if (v !== undefined && !HOP.has(k)) out[k] = v;
          out['content-length'] = String(answer.length);
          const status = upRes.statusCode ?? 502;
          if (req.url?.startsWith(CHART_PATH)) {
            let hash: string | null = null;
            try {
              hash = queryHash(JSON.parse(body.toString('utf8')));
            } catch {
              // not JSON: counted without a hash
            }
            calls.push({ hash, start, end: monoMs(), status });
          }
          res.writeHead(status, out);
          res.end(answer);
        });
      },
    );
    up.on('error', () => res.destroy());
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    up.end(body);
  });
});
await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
const proxyPort = (proxy.address() as AddressInfo).port;

/** Renders a query once, straight at the simulator, so its render cache answers the service's call. */
async function warm(query: unknown): Promise<number> {
  const body = JSON.stringify(query);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: simUrl.hostname,
        port: simUrl.port,
        path: CHART_PATH,
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
          'x-ch-auth-email': sim.email,
          'x-ch-auth-api-token': sim.token,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

type Command =
  | { id: number; cmd: 'setFaults'; arg: Record<string, unknown> }
  | { id: number; cmd: 'calls'; arg: { since: number } }
  | { id: number; cmd: 'stats' }
  | { id: number; cmd: 'script'; arg: { outcomes: unknown[] } }
  | { id: number; cmd: 'reset' }
  | { id: number; cmd: 'warm'; arg: { queries: unknown[] } }
  | { id: number; cmd: 'cpu' }
  | { id: number; cmd: 'canned'; arg: { png?: string } };

process.on('message', (msg: Command) => {
  const reply = (value: unknown): void => void process.send?.({ id: msg.id, ok: true, value });
  const fail = (err: unknown): void =>
    void process.send?.({ id: msg.id, ok: false, error: (err as Error).message });
  try {
    switch (msg.cmd) {
      case 'setFaults':
        sim.setFaults(msg.arg);
        if (typeof msg.arg.latencyMs === 'number') cannedDelayMs = msg.arg.latencyMs;
        return reply(null);
      case 'calls':
        return reply({ calls: calls.slice(msg.arg.since), next: calls.length });
      case 'stats':
        return reply(sim.stats());
      case 'script':
        sim.script(msg.arg.outcomes as Parameters<typeof sim.script>[0]);
        return reply(null);
      case 'reset':
        // Faults, script and counters back to the start; the proxy's call log too.
        sim.reset();
        cannedDelayMs = latencyMs;
        calls.length = 0;
        return reply(null);
      case 'cpu': {
        const u = process.cpuUsage();
        return reply({ userMs: u.user / 1000, systemMs: u.system / 1000 });
      }
      case 'canned': {
        if (!msg.arg.png) {
          canned = undefined;
          return reply(null);
        }
        // Padded to a multiple of 3 bytes, so the base64 of the tail can simply be appended.
        const png = Buffer.from(msg.arg.png, 'base64');
        const padded = Buffer.concat([png, Buffer.alloc((3 - (png.length % 3)) % 3)]);
        canned = { prefix: padded.toString('base64'), counter: 0 };
        return reply(null);
      }
      case 'warm':
        Promise.all(msg.arg.queries.map(warm)).then(reply, fail);
        return;
    }
  } catch (err) {
    fail(err);
  }
});

process.on('disconnect', () => {
  proxy.close();
  agent.destroy();
  void sim.close().finally(() => process.exit(0));
});

process.send?.({
  ready: {
    url: `http://127.0.0.1:${proxyPort}${simUrl.pathname}`,
    email: sim.email,
    token: sim.token,
    pid: process.pid,
  },
});
