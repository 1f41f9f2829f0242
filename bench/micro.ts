/**
 * `npm run bench:micro`: the hot path in seconds, so a regression shows before a full bench run.
 * Builds the app in this process (buildApp, a temp CACHE_PATH, the simulator in-process, logs at
 * info written to /dev/null, metrics on), puts one image in, then measures against a bare
 * node:http server in this same process answering the same bytes with the same headers:
 * hot GET /image/{id} and the repeat POST of its query (rule 1), taking turns so that whatever
 * else the machine does weighs on each alike. Prints req/s and the ratios the issue's targets
 * name, and the CPU this process spent per request: steadier than req/s on a busy machine, as
 * other processes take wall-clock time, not this process's CPU. The load generator is wrk when installed (a process of its own), else autocannon (in
 * this process: it then shares the event loop with the servers, and the ratios are compressed).
 */
import { readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startSimulator } from 'kentik-simulator';
import pino from 'pino';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { answerHeaders, bareImageServer, ROOT, tempDir } from '../test/support/index.ts';
import { postRequest, request } from './lib/http.ts';
import { pickLoadTool, type LoadSpec } from './lib/load.ts';
import { withTitle } from './lib/context.ts';

const { values: a } = parseArgs({
  options: {
    seconds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '32' },
    loadgen: { type: 'string', default: 'auto' },
  },
});
const seconds = Number(a.seconds);
const connections = Number(a.connections);

const sim = await startSimulator({ email: 'micro@example.com', token: 'micro-token' });
const cachePath = tempDir('kic-micro-');
const config = loadConfig({
  KT_AUTH_EMAIL: 'micro@example.com',
  KT_AUTH_TOKEN: 'micro-token',
  KENTIK_API_URL: sim.url,
  CACHE_PATH: cachePath,
  RATE_LIMIT_MAX: '0',
  MAX_CONNECTIONS_PER_ADDRESS: '0',
});
// The default settings: a log line per request at info, written (to nowhere) as in production.
const logger = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true }));
const { app } = await buildApp({ config, logger });
await app.listen({ host: '127.0.0.1', port: 0 });
const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

const example = JSON.parse(
  readFileSync(path.join(ROOT, 'examples/queries/12-source-countries-pie-png.json'), 'utf8'),
) as { api_query: Record<string, unknown> };
const query = withTitle(example.api_query, `micro ${process.pid}`);
const id = await postRequest(base, JSON.stringify({ api_query: query, ttl: 3600 }));
const first = await request(`${base}/image/${id}`, { timeoutMs: 60_000 });
if (first.status !== 200) throw new Error(`GET /image answered ${first.status}`);
const bare = bareImageServer(first.body, answerHeaders(first.rawHeaders));
await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/`;
// Rule 1: the entry lives an hour, a 5-minute ttl finds it (same id, nothing written).
const body = JSON.stringify({ api_query: query, ttl: 300 });

const tool = await pickLoadTool(a.loadgen as 'auto' | 'wrk' | 'autocannon', 1);
const targets: Array<{ name: string; spec: LoadSpec }> = [
  { name: 'bare node:http GET', spec: { url: bareUrl, connections, durationSec: 1 } },
  { name: 'service hot GET', spec: { url: `${base}/image/${id}`, connections, durationSec: 1 } },
  {
    name: 'service repeat POST',
    spec: { url: `${base}/requests`, method: 'POST', body, connections, durationSec: 1 },
  },
];
const totals = new Map(targets.map((t) => [t.name, { requests: 0, sec: 0, cpuUs: 0, bad: 0 }]));
try {
  for (const t of targets) await tool.run({ ...t.spec, durationSec: 1 }); // warm-up, JIT
  // One-second turns, round-robin, `seconds` turns each.
  for (let i = 0; i < seconds; i++) {
    for (const t of targets) {
      const cpu = process.cpuUsage();
      const r = await tool.run(t.spec);
      const used = process.cpuUsage(cpu);
      const sum = totals.get(t.name)!;
      sum.cpuUs += used.user + used.system;
      sum.requests += r.requests;
      sum.sec += r.durationSec;
      sum.bad += r.errors + r.non2xx;
    }
  }
} finally {
  await app.close();
  await new Promise((resolve) => bare.close(resolve));
  await sim.close();
  rmSync(cachePath, { recursive: true, force: true });
}

const rps = (name: string): number => totals.get(name)!.requests / totals.get(name)!.sec;
const cpu = (name: string): number => totals.get(name)!.cpuUs / totals.get(name)!.requests;
const line = (name: string, note = ''): string =>
  `${name.padEnd(20)} ${Math.round(rps(name)).toLocaleString('en-US').padStart(7)} req/s ${cpu(name).toFixed(1).padStart(6)} µs CPU/req${
    totals.get(name)!.bad > 0 ? `  (${totals.get(name)!.bad} errors or non-2xx!)` : ''
  }${note}`;
const ratio = (by: string, x: string, target: number): string =>
  `  ${(rps(x) / rps(by)).toFixed(2)}× by req/s, ${(cpu(by) / cpu(x)).toFixed(2)}× by CPU (target ≥ ${target.toFixed(2)}×)`;
console.log(
  `micro-benchmark: ${(first.body.length / 1024).toFixed(0)} KB ${first.headers['content-type']}, ` +
    `${connections} connections, ${tool.name}, ${seconds} × 1 s each, Node ${process.version}`,
);
console.log(line('bare node:http GET'));
console.log(line('service hot GET', ratio('bare node:http GET', 'service hot GET', 0.85)));
console.log(line('service repeat POST', ratio('service hot GET', 'service repeat POST', 0.5)));
process.exit(0);
