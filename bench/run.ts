/**
 * `npm run bench`: every benchmark scenario in one run, against the simulator, the production build
 * of the service and (when installed) nginx serving the same bytes. Prints a markdown table and
 * writes the raw results to bench/results/latest.json. `--help` for options.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pickLoadTool } from './lib/load.ts';
import {
  ROOT,
  ensureBuild,
  startSimulatorProcess as startSimulator,
  type SimControl,
} from '../test/support/index.ts';
import { resultsChart } from './lib/chart.ts';
import { cpuPressure, cpuSample, machine, markdownTable, noise, Rows } from './lib/report.ts';
import { FULL, QUICK, hotImage, service, type Ctx } from './lib/context.ts';
import { addedLatency } from './scenarios/added-latency.ts';
import { clusterFanIn } from './scenarios/cluster-fan-in.ts';
import { clusterHotGet } from './scenarios/cluster-hot-get.ts';
import { coldStart } from './scenarios/cold-start.ts';
import { fanIn } from './scenarios/fan-in.ts';
import { hotGet } from './scenarios/hot-get.ts';
import { maintenanceUnderLoad } from './scenarios/maintenance.ts';
import { millionEntries } from './scenarios/million.ts';
import { redisMemory } from './scenarios/redis-memory.ts';
import { repeatPost, repeatPostSameTtl } from './scenarios/repeat-post.ts';
import { uniquePosts } from './scenarios/unique-posts.ts';
import { onPath, round } from './lib/util.ts';

const USAGE = `Usage: npm run bench -- [options]

Runs every scenario in one run and prints a markdown table (scenario, figure, value, target,
result); raw results go to bench/results/latest.json and a chart of every figure against its target to
bench/results/latest.svg. Builds the service first if dist/ is stale.

Scenarios: 1 hot GET (vs nginx and a bare node:http server), 2 repeat POST (rule 1; 2b: same ttl,
rule 2), 3 fan-in, 4 added latency, 5 cold start, 6 maintenance under load, 7 unique POSTs,
8 cluster fan-in (3 replicas on one redis-server), 9 cluster hot GET (Redis mode vs filesystem),
10 Redis memory per image (capacity), 11 a million entries in the index (memory, /info, maintenance).

Options:
  --quick               short version (seconds per scenario, smaller data sets): proves the harness
  --only LIST           run only these scenarios, e.g. --only 1,2,6 (2b runs with 2)
  --loadgen TOOL        auto (default: wrk when on the PATH, else autocannon), wrk or autocannon
  --wrk-threads N       wrk threads (default 1: one core for the server, one for wrk)
  --no-nginx            skip nginx even when it is installed
  --from-source         run the service from src/ via tsx instead of building dist/
  --profile             write a V8 CPU profile of every service process to bench/results/profiles/
                        (summarise one with: npx tsx bench/profile-summary.ts FILE)
  --fanin-latency MS    simulator latency for scenario 3 (default 1000)
  --added-latency MS    simulator latency for scenario 4 (default 200)
  --out FILE            where to write the JSON (default bench/results/latest.json)
  --help                this text

Needs npm install and redis-server (scenarios 8-10); nginx and wrk are used when present
(apt-get install redis-server nginx-light wrk).
Numbers vary with the machine and whatever else runs on it: the JSON records the load average.
Nothing fails on a number: the exit code is 1 only when the harness itself broke.`;

async function main(): Promise<number> {
  const { values: a } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      loadgen: { type: 'string', default: 'auto' },
      'wrk-threads': { type: 'string', default: '1' },
      'no-nginx': { type: 'boolean', default: false },
      'from-source': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      'fanin-latency': { type: 'string' },
      'added-latency': { type: 'string' },
      out: { type: 'string', default: path.join(ROOT, 'bench/results/latest.json') },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (a.help) {
    console.log(USAGE);
    return 0;
  }
  const loadgen = a.loadgen as 'auto' | 'wrk' | 'autocannon';
  if (!['auto', 'wrk', 'autocannon'].includes(loadgen))
    throw new Error(`--loadgen must be auto, wrk or autocannon, not ${a.loadgen}`);
  const params = { ...(a.quick ? QUICK : FULL) };
  const num = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number ≥ 0`);
    return n;
  };
  params.fanInLatencyMs = num(a['fanin-latency'], '--fanin-latency') ?? params.fanInLatencyMs;
  params.addedLatencyMs = num(a['added-latency'], '--added-latency') ?? params.addedLatencyMs;
  const only = a.only ? new Set(a.only.split(',').map((s) => s.trim())) : undefined;
  const wants = (n: string): boolean => !only || only.has(n);

  const log = (msg: string): void => void process.stderr.write(`${msg}\n`);
  const started = new Date();
  const loadavgStart = os.loadavg().map((n) => round(n, 2));
  const pressureStart = cpuPressure();
  const busy = pressureStart
    ? pressureStart.avg10 > 10
    : (loadavgStart[0] ?? 0) > os.availableParallelism() * 0.5;
  if (busy) {
    log(
      `warning: load average ${loadavgStart.join(' ')}${pressureStart ? `, CPU pressure ${pressureStart.avg10}%` : ''} before the benchmark: ` +
        'something else is using the CPUs, numbers will be low and noisy',
    );
  }

  const fromSource = a['from-source'];
  const built = fromSource ? false : ensureBuild(log);
  const tool = await pickLoadTool(loadgen, Number(a['wrk-threads']));
  const nginx = a['no-nginx'] ? undefined : await onPath('nginx');
  log(
    `load generator: ${tool.name} ${tool.version}${tool.name === 'wrk' ? ` (${a['wrk-threads']} thread)` : ' (in this process)'}; nginx: ${nginx ?? 'not used'}; service: ${fromSource ? 'src/ via tsx' : 'dist/ (production build)'}`,
  );

  const profileDir = a.profile ? path.join(ROOT, 'bench/results/profiles') : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const baseQuery = (
    JSON.parse(
      readFileSync(path.join(ROOT, 'examples/queries/12-source-countries-pie-png.json'), 'utf8'),
    ) as { api_query: Record<string, any> }
  ).api_query;

  const rows = new Rows();
  const errors: Array<{ scenario: string; error: string }> = [];
  let sim: SimControl | undefined;
  const cleanup: Ctx['cleanup'] = [];
  let ctx: Ctx | undefined;
  /** CPU the rest of the machine used during each scenario: other processes, and the hypervisor's steal. */
  const competition: Record<string, ReturnType<typeof noise>> = {};
  const step = async (name: string, fn: () => Promise<void>): Promise<void> => {
    log(`scenario ${name}…`);
    const t = performance.now();
    const before = cpuSample();
    try {
      await fn();
      competition[name] = noise(before, cpuSample());
    } catch (err) {
      const msg = (err as Error).stack ?? String(err);
      errors.push({ scenario: name, error: msg });
      rows.check(
        name,
        'harness error',
        (err as Error).message.split('\n')[0]!.slice(0, 160),
        'runs',
        false,
      );
      log(`  error: ${msg}`);
    }
    log(`  done in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  };

  try {
    sim = await startSimulator(0);
    ctx = {
      params,
      tool,
      sim,
      fromSource,
      profileDir,
      useNginx: !a['no-nginx'],
      rows,
      raw: {},
      log,
      nonce: randomBytes(4).toString('hex'),
      baseQuery,
      cleanup,
    };
    const c = ctx;

    let hotGetRps = Number.NaN;
    if (['1', '2', '3', '4'].some(wants)) {
      // The default settings, as the targets of 1 and 2 name them: a log line per request at info.
      const svc = await service(c, { LOG_LEVEL: 'info' });
      const hot = await hotImage(c, svc);
      if (wants('1'))
        await step('1 Hot GET', async () => void (hotGetRps = (await hotGet(c, svc, hot)).rps));
      if (wants('2')) await step('2 Repeat POST', () => repeatPost(c, svc, hot, hotGetRps));
      if (wants('3')) await step('3 Fan-in', () => fanIn(c, svc));
      if (wants('4')) await step('4 Added latency', () => addedLatency(c, svc));
      // Last on this instance: it leaves thousands of entries behind.
      if (wants('2')) await step('2b Repeat POST, same ttl', () => repeatPostSameTtl(c, svc, hot));
      await svc.stop();
    }
    if (wants('7')) await step('7 Unique POSTs', () => uniquePosts(c));
    let perEntry = 0.1;
    if (wants('5'))
      await step(
        '5 Cold start',
        async () => void ({ generationMsPerEntry: perEntry } = await coldStart(c)),
      );
    if (wants('6'))
      await step('6 Maintenance under load', () => maintenanceUnderLoad(c, hotGetRps, perEntry));
    if (wants('8')) await step('8 Cluster fan-in', () => clusterFanIn(c));
    if (wants('9')) await step('9 Cluster hot GET', () => clusterHotGet(c));
    if (wants('10')) await step('10 Redis memory per image', () => redisMemory(c));
    if (wants('11')) await step('11 1M entries', () => millionEntries(c));
  } finally {
    for (const fn of cleanup.reverse()) await Promise.resolve(fn()).catch(() => undefined);
    await sim?.stop();
  }

  const order = (s: string): number => Number.parseFloat(s) + (s.includes('b ') ? 0.5 : 0);
  const sorted = [...rows.rows].sort((x, y) => order(x.scenario) - order(y.scenario));
  const table = markdownTable(sorted);
  const gen = `${tool.name} ${tool.version}${tool.name === 'wrk' ? `, ${a['wrk-threads']} thread` : ''}`;
  console.log(`\n${table}\n`);
  const m = machine();
  const nginxNote = nginx
    ? 'nginx yes'
    : a['no-nginx']
      ? 'nginx skipped (--no-nginx)'
      : 'nginx not installed';
  console.log(
    `${m.nproc} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}; load generator ${gen}; ${nginxNote}; ${a.quick ? 'QUICK run (numbers not meaningful)' : 'full run'}`,
  );
  const noisy = Object.entries(competition).filter(
    ([, v]) => v && v.otherCores + v.stealCores > 0.1,
  );
  if (noisy.length > 0) {
    console.log(
      `Other processes competed for the CPUs during: ${noisy.map(([k, v]) => `${k} (${v!.otherCores} cores${v!.stealCores > 0.01 ? ` + ${v!.stealCores} stolen` : ''})`).join(', ')}. ` +
        'Re-run on an idle machine before trusting those numbers.',
    );
  }
  const misses = rows.misses;
  console.log(
    misses.length === 0
      ? 'All targets met.'
      : `Missed: ${misses.map((r) => `${r.scenario}: ${r.figure} = ${r.value} (target ${r.target})`).join('; ')}`,
  );

  const commit =
    spawnSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: ROOT,
      encoding: 'utf8',
    }).stdout?.trim() || undefined;
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src'], {
    cwd: ROOT,
    encoding: 'utf8',
  }).stdout?.trim();
  const result = {
    version: 1,
    mode: a.quick ? 'quick' : 'full',
    startedAt: started.toISOString(),
    durationSec: round((Date.now() - started.getTime()) / 1000),
    commit: commit ? `${commit}${dirty ? ' + local changes in src/' : ''}` : undefined,
    machine: m,
    loadavg: { start: loadavgStart, end: os.loadavg().map((n) => round(n, 2)) },
    /** % of time some task waited for a CPU (Linux PSI); high means a noisy neighbour skewed the run. */
    cpuPressure: { start: pressureStart, end: cpuPressure() },
    /** Cores other processes (and the hypervisor) used while each scenario ran: more than ~0.1 skews it. */
    competition,
    loadGenerator: {
      name: tool.name,
      version: tool.version,
      ...(tool.name === 'wrk' ? { threads: Number(a['wrk-threads']) } : {}),
    },
    nginx: nginx ?? null,
    service: fromSource ? 'src via tsx' : 'dist (production build)',
    built,
    params,
    scenarios: ctx?.raw ?? {},
    rows: sorted,
    misses: misses.map((r) => `${r.scenario}: ${r.figure}`),
    errors,
    table,
  };
  mkdirSync(path.dirname(a.out), { recursive: true });
  writeFileSync(a.out, JSON.stringify(result, null, 2) + '\n');
  log(`raw results: ${path.relative(process.cwd(), a.out) || a.out}`);
  const chart = resultsChart(
    sorted,
    `${started.toISOString().slice(0, 10)}, ${result.commit ?? 'unknown commit'}, ${m.nproc} × ${m.cpuModel}, Node ${m.node}${a.quick ? ', QUICK run' : ''}`,
  );
  if (chart) {
    const svg = a.out.replace(/\.json$/, '') + '.svg';
    writeFileSync(svg, chart);
    log(`chart: ${path.relative(process.cwd(), svg) || svg}`);
  }
  return errors.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
