/**
 * Profiles one benchmark workload: starts the simulator and the service with `node --cpu-prof`,
 * drives the workload, stops the service (which writes the profile) and prints where the CPU
 * time went (see profile-summary.ts).
 *
 *   npx tsx bench/profile.ts hot-get|repeat-post|same-ttl-post|unique-post [--canned] [--seconds 10] [--loadgen wrk|autocannon] [--top 25] [--no-profile]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { UNIQUE_MARKER, pickLoadTool, type LoadSpec } from './lib/load.ts';
import {
  ROOT,
  cpuMsOf,
  ensureBuild,
  startSimulatorProcess as startSimulator,
  tempDir,
} from '../test/support/index.ts';
import { startBenchService as startService } from './lib/service.ts';
import { FULL, hotImage, withTitle, type Ctx } from './lib/context.ts';
import { summarise } from './profile-summary.ts';

const WORKLOADS = ['hot-get', 'repeat-post', 'same-ttl-post', 'unique-post'] as const;
type Workload = (typeof WORKLOADS)[number];

const { values: a, positionals } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    loadgen: { type: 'string', default: 'auto' },
    top: { type: 'string', default: '25' },
    'from-source': { type: 'boolean', default: false },
    /** Only measure (throughput and service CPU per request), without the profiler's overhead. */
    'no-profile': { type: 'boolean', default: false },
    /** unique-post: the upstream answers at once with a pre-rendered PNG instead of rendering (see sim-child.ts). */
    canned: { type: 'boolean', default: false },
  },
  allowPositionals: true,
});
const workload = positionals[0] as Workload;
if (!WORKLOADS.includes(workload)) {
  console.error(
    `usage: npx tsx bench/profile.ts ${WORKLOADS.join('|')} [--seconds N] [--loadgen wrk|autocannon] [--top N]`,
  );
  process.exit(2);
}
if (!a['from-source']) ensureBuild((s) => console.error(s));
const tool = await pickLoadTool(a.loadgen as 'auto', 1);
const sim = await startSimulator(0);
const profileDir = mkdtempSync(path.join(os.tmpdir(), 'kic-bench-prof-'));
const cachePath = tempDir('kic-bench-cache-');
const svc = await startService({
  sim,
  cachePath,
  fromSource: a['from-source'],
  ...(a['no-profile'] ? {} : { profileDir }),
});
try {
  const baseQuery = (
    JSON.parse(
      readFileSync(path.join(ROOT, 'examples/queries/12-source-countries-pie-png.json'), 'utf8'),
    ) as { api_query: Record<string, any> }
  ).api_query;
  const ctx = { baseQuery, nonce: Math.random().toString(16).slice(2, 10) } as Ctx;
  const hot = await hotImage(ctx, svc);
  if (a.canned) await sim.canned(hot.bytes);
  const seconds = Number(a.seconds);
  const spec: LoadSpec =
    workload === 'hot-get'
      ? { url: `${svc.url}/image/${hot.id}`, connections: FULL.connections, durationSec: seconds }
      : {
          url: `${svc.url}/requests`,
          method: 'POST',
          connections: FULL.connections,
          durationSec: seconds,
          ...(workload === 'unique-post'
            ? {
                body: JSON.stringify({
                  api_query: withTitle(baseQuery, `profile ${ctx.nonce} ${UNIQUE_MARKER}`),
                  ttl: 300,
                }),
                unique: true,
              }
            : {
                body: JSON.stringify({
                  api_query: hot.query,
                  ttl: workload === 'repeat-post' ? 300 : 3600,
                }),
              }),
        };
  await tool.run({ ...spec, durationSec: 2 }); // warm-up
  const cpu0 = cpuMsOf(svc.pid) ?? Number.NaN;
  const r = await tool.run(spec);
  const cpuUs = (((cpuMsOf(svc.pid) ?? Number.NaN) - cpu0) * 1000) / r.requests;
  svc.assertAlive();
  console.log(
    `${workload} with ${tool.name}: ${Math.round(r.rps)} req/s, service CPU ${cpuUs.toFixed(1)} µs/request, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, errors ${r.errors}, non-2xx ${r.non2xx}`,
  );
} finally {
  await svc.stop();
  await sim.stop();
  rmSync(cachePath, { recursive: true, force: true });
}
if (a['no-profile']) process.exit(0);
const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error('the service wrote no profile');
const s = summarise(JSON.parse(readFileSync(path.join(profileDir, file), 'utf8')), Number(a.top));
console.log(
  `profile: ${path.join(profileDir, file)} (wall ${s.totalMs} ms, idle ${s.idleMs} ms; % of busy time)`,
);
for (const [title, rows] of [
  ['self time by function', s.bySelf],
  ['self time by package / file', s.byPackage],
  ['inclusive time of the service’s own functions', s.inclusive],
] as const) {
  console.log(`\n## ${title}`);
  for (const row of rows)
    console.log(`${String(row.ms).padStart(8)} ms ${String(row.pct).padStart(5)} %  ${row.name}`);
}
