/**
 * `npm run soak`: mixed traffic at a steady rate against the real service (compiled) and the
 * simulator, with ids expiring all the time and maintenance running often, for N minutes. Reports
 * errors (target 0) and the service's RSS growth after warm-up (target < 10 %). Not part of CI.
 * `--help` for options.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { queryHash } from '../src/domain/hash.ts';
import { startSimulator } from 'kentik-simulator';
import { buildService } from '../test/support/build.ts';
import { kentikQuery, removeDir, startService, TEST_TOKEN } from '../test/support/index.ts';

const USAGE = `Usage: npm run soak -- [options]

Drives the service (compiled from src/, against the Kentik simulator) with a steady mix of traffic:
POSTs of a pool of queries with short ttls (so ids expire all the time), GETs of issued ids, and
operations endpoints; maintenance runs every few seconds. Prints a report; exit code 1 when a
target is missed.

Options:
  --minutes N     how long (default 10; fractions allowed)
  --rate N        requests per second (default 40)
  --queries N     distinct queries in the pool (default 150)
  --latency MS    simulator latency (default 150, plus up to 250 jitter)
  --json FILE     also write the report as JSON
  --help          this text

Targets: 0 errors (an error is a 5xx, a network error, a POST that is not 200, or a 404 for an id
that has not expired), RSS growth < 10 % (median RSS of the last minute vs the minute after a
150 s warm-up; shorter runs scale both down, and then the live set is still growing).`;

interface Sample {
  t: number;
  rss: number;
  heap: number;
  entries: number;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
};
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
};
const mb = (b: number): string => `${(b / 1024 / 1024).toFixed(1)} MB`;

async function main(): Promise<number> {
  const { values: a } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      rate: { type: 'string', default: '40' },
      queries: { type: 'string', default: '150' },
      latency: { type: 'string', default: '150' },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (a.help) {
    console.log(USAGE);
    return 0;
  }
  const minutes = Number(a.minutes);
  const rate = Number(a.rate);
  const poolSize = Number(a.queries);
  const latency = Number(a.latency);
  if (!(minutes > 0) || !(rate > 0) || !(poolSize > 0) || !(latency >= 0)) {
    console.error(`bad options\n\n${USAGE}`);
    return 2;
  }
  const durationMs = minutes * 60_000;
  // Warm-up: until the live set stops growing (the longest ttl, 120 s, plus a maintenance pass or
  // two), at most a third of the run. Then the RSS of the first and the last window are compared.
  const warmupMs = Math.min(150_000, durationMs / 3);
  const windowMs = Math.min(60_000, durationMs / 6);

  const sim = await startSimulator({
    email: 'test@example.com',
    token: TEST_TOKEN,
    faults: { latencyMs: latency, jitterMs: 250 },
  });
  const svc = await startService(
    {
      KENTIK_API_URL: sim.url,
      LOG_LEVEL: 'info',
      CACHE_MAINTENANCE_PERIOD: '5',
      REUSE_WINDOW: '10',
      KENTIK_API_TIMEOUT: '10',
      KENTIK_API_RETRIES: '2',
    },
    { entry: await buildService() },
  );
  const dispatcher = new Agent({ connections: 64, keepAliveTimeout: 10_000 });
  const queries = Array.from({ length: poolSize }, (_, i) =>
    kentikQuery(`soak-${i}`, ['png', 'png', 'svg', 'jpeg'][i % 4]),
  );
  const ttls = [5, 10, 20, 30, 60, 120];
  /** Ids handed out, by id; long-expired ones are dropped so GETs stay mostly on live ids. */
  const issued = new Map<string, { id: string; hash: string; expiresAt: number }>();
  let issuedTotal = 0;
  let live: Array<{ id: string; hash: string; expiresAt: number }> = [];
  const errors = new Map<string, number>();
  const outcomes = new Map<string, number>();
  const latencies: number[] = [];
  const samples: Sample[] = [];
  const count = (m: Map<string, number>, k: string): void => void m.set(k, (m.get(k) ?? 0) + 1);
  const error = (kind: string, detail: string): void => {
    if (!errors.has(kind)) console.error(`first error of kind "${kind}": ${detail}`);
    count(errors, kind);
  };

  async function call(
    method: 'GET' | 'POST',
    path: string,
    body?: string,
  ): Promise<{ status: number; bytes: Buffer; headers: Record<string, unknown> }> {
    const t0 = performance.now();
    const res = await request(`${svc.url}${path}`, {
      method,
      dispatcher,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body,
      headersTimeout: 120_000,
      bodyTimeout: 120_000,
    });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    latencies.push(performance.now() - t0);
    return { status: res.statusCode, bytes, headers: res.headers };
  }

  async function post(): Promise<void> {
    const q = queries[Math.floor(Math.random() * queries.length)]!;
    const ttl = ttls[Math.floor(Math.random() * ttls.length)]!;
    const r = await call('POST', '/requests', JSON.stringify({ api_query: q, ttl }));
    count(outcomes, `POST ${r.status}`);
    if (r.status !== 200) return error(`POST ${r.status}`, r.bytes.toString().slice(0, 200));
    const id = (JSON.parse(r.bytes.toString()) as { id: string }).id;
    if (!issued.has(id)) {
      issuedTotal++;
      const it = { id, hash: queryHash(q), expiresAt: Number(id.split('_')[1]) * 1000 };
      issued.set(id, it);
      live.push(it);
    }
  }

  async function get(): Promise<void> {
    const it = live[Math.floor(Math.random() * live.length)];
    if (!it) return post();
    const r = await call('GET', `/image/${it.id}`);
    count(outcomes, `GET ${r.status}`);
    if (r.status === 200) {
      if (r.headers.etag !== `"${sha(r.bytes)}"`) error('GET torn image', it.id);
      return;
    }
    if (r.status === 404 && it.expiresAt <= Date.now()) return; // expired: expected
    error(
      `GET ${r.status}${r.status === 404 ? ' before expiry' : ''}`,
      `${it.id}: ${r.bytes.toString().slice(0, 200)}`,
    );
  }

  async function ops(): Promise<void> {
    const path = ['/info?limit=10', '/metrics', '/readyz', '/healthz'][
      Math.floor(Math.random() * 4)
    ]!;
    const r = await call('GET', path);
    count(outcomes, `${path.split('?')[0]} ${r.status}`);
    if (r.status !== 200) error(`${path} ${r.status}`, r.bytes.toString().slice(0, 200));
  }

  async function sample(): Promise<void> {
    const res = await request(`${svc.url}/metrics`, { dispatcher });
    const text = await res.body.text();
    const value = (name: string): number => {
      let total = 0;
      for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm')))
        total += Number(m[1]);
      return total;
    };
    samples.push({
      t: Date.now(),
      rss: value('kic_process_process_resident_memory_bytes'),
      heap: value('kic_process_nodejs_heap_size_used_bytes'),
      entries: value('kic_cache_entries'),
    });
  }

  console.log(
    `soak: ${minutes} min at ${rate} req/s (${poolSize} queries, ttls ${ttls.join('/')} s, maintenance every 5 s) against ${svc.url}`,
  );
  const started = Date.now();
  const inFlight = new Set<Promise<void>>();
  let sent = 0;
  let skipped = 0;
  let nextSample = started;
  let nextProgress = started + 30_000;
  for (let n = 0; ; n++) {
    const due = started + (n * 1000) / rate;
    if (due - started >= durationMs) break;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    if (Date.now() >= nextSample) {
      nextSample += 5_000;
      // Ids that expired over 10 s ago: a 404 is all they can give; keep a few in the mix only.
      live = live.filter((i) => i.expiresAt > Date.now() - 10_000);
      for (const [id, i] of issued) if (i.expiresAt <= Date.now() - 10_000) issued.delete(id);
      void sample().catch((err: unknown) => error('metrics scrape', String(err)));
    }
    if (Date.now() >= nextProgress) {
      nextProgress += 30_000;
      const last = samples.at(-1);
      console.log(
        `  ${Math.round((Date.now() - started) / 1000)} s: ${sent} requests, ${[...errors.values()].reduce((x, y) => x + y, 0)} errors, RSS ${last ? mb(last.rss) : '?'}, ${last?.entries ?? '?'} live entries`,
      );
    }
    if (inFlight.size >= 1000) {
      skipped++; // the service stopped keeping up; counted as an error below
      continue;
    }
    const u = Math.random();
    const op = u < 0.2 ? post : u < 0.95 ? get : ops;
    sent++;
    const p = op()
      .catch((err: unknown) => error('network', (err as Error).message))
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  }
  await Promise.all(inFlight);
  await sample();
  const elapsed = Date.now() - started;

  const expiredTotal = Number(
    /^kic_cache_expired_total (\S+)$/m.exec(
      await (await request(`${svc.url}/metrics`, { dispatcher })).body.text(),
    )?.[1] ?? NaN,
  );
  await dispatcher.close();
  const exit = await svc.stop();
  await sim.close();
  removeDir(svc.cachePath);

  if (skipped > 0) errors.set('client saturated (1000 in flight)', skipped);
  const leaks = svc.output.filter((l) => l.includes(TEST_TOKEN)).length;
  if (leaks > 0) errors.set('token in service output', leaks);
  const unhandled = svc.output.filter((l) => /unhandled (rejection|error)/.test(l)).length;
  if (unhandled > 0) errors.set('unhandled error logged', unhandled);
  if (exit !== 0) errors.set(`exit code ${exit} on SIGTERM`, 1);

  const first = samples.filter(
    (s) => s.t >= started + warmupMs && s.t < started + warmupMs + windowMs,
  );
  const last = samples.filter((s) => s.t >= started + elapsed - windowMs);
  const rssBase = median(first.map((s) => s.rss));
  const rssEnd = median(last.map((s) => s.rss));
  const growth = rssEnd / rssBase - 1;
  const errorCount = [...errors.values()].reduce((x, y) => x + y, 0);
  const report = {
    minutes: elapsed / 60_000,
    targetRate: rate,
    requests: sent,
    achievedRate: sent / (elapsed / 1000),
    outcomes: Object.fromEntries([...outcomes].sort()),
    errors: Object.fromEntries(errors),
    errorCount,
    idsIssued: issuedTotal,
    idsExpiredByMaintenance: expiredTotal,
    upstreamCalls: sim.stats().total,
    latencyMs: { p50: pct(latencies, 50), p99: pct(latencies, 99), max: pct(latencies, 100) },
    rss: { baseline: rssBase, end: rssEnd, max: Math.max(...samples.map((s) => s.rss)), growth },
    heapEnd: samples.at(-1)?.heap,
    warmupSeconds: warmupMs / 1000,
    windowSeconds: windowMs / 1000,
    pass: errorCount === 0 && growth < 0.1,
  };

  console.log(`
soak report
  duration        ${report.minutes.toFixed(1)} min, ${sent} requests (${report.achievedRate.toFixed(1)}/s, target ${rate}/s)
  outcomes        ${Object.entries(report.outcomes)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ')}
  errors          ${errorCount}${
    errorCount
      ? ` (${Object.entries(report.errors)
          .map(([k, v]) => `${k}: ${v}`)
          .join(', ')})`
      : ''
  }   target 0
  ids             ${issuedTotal} issued, ${expiredTotal} expired and removed by maintenance, ${report.upstreamCalls} upstream calls
  latency         p50 ${report.latencyMs.p50.toFixed(1)} ms, p99 ${report.latencyMs.p99.toFixed(1)} ms, max ${report.latencyMs.max.toFixed(0)} ms (GETs of pending ids wait for Kentik)
  RSS             ${mb(rssBase)} after ${warmupMs / 1000} s of warm-up (median of ${first.length} samples), ${mb(rssEnd)} at the end (median of ${last.length}), max ${mb(report.rss.max)}${warmupMs < 150_000 ? '\n                  (run shorter than 7.5 min: the live set is still growing during the first window)' : ''}
  RSS growth      ${(growth * 100).toFixed(1)} %   target < 10 %
  result          ${report.pass ? 'PASS' : 'FAIL'}`);
  if (a.json) writeFileSync(a.json, JSON.stringify(report, null, 2));
  return report.pass ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(2);
  },
);
