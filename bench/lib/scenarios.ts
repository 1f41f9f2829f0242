import { createHash } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import { rmSync } from 'node:fs';
import { queryHash } from '../../src/domain/hash.ts';
import { FsStore } from '../../src/store/fs-store.ts';
import { writeDataset, type Dataset } from './dataset.ts';
import { metricValue, postRequest, request, scrape } from './http.ts';
import { UNIQUE_MARKER, type LoadResult, type LoadTool } from './load.ts';
import {
  cpuMsOf,
  rssBytes,
  startBareNode,
  startNginx,
  startNginxCache,
  tempDir,
  type SimControl,
} from '../../test/support/index.ts';
import { startBenchService as startService, type ServiceProc } from './service.ts';
import { fmt, type Rows } from './report.ts';
import { monoMs, percentile, round, sleep, waitFor } from './util.ts';

export interface Params {
  /** Seconds of load before each measured run, not counted. */
  warmSec: number;
  durationSec: number;
  connections: number;
  fanInClients: number;
  fanInLatencyMs: number;
  fanInBudgetMs: number;
  addedLatencyMs: number;
  addedRounds: number;
  addedBudgetMs: number;
  coldEntries: number;
  coldReadyMs: number;
  coldRssBytes: number;
  /** How long after ready RSS is watched for its peak. */
  coldRssWatchSec: number;
  maintEntries: number;
  maintBaselineSec: number;
  maintLagP99Ms: number;
  uniqueDurationSec: number;
}

export const FULL: Params = {
  warmSec: 2,
  durationSec: 10,
  connections: 32,
  fanInClients: 500,
  fanInLatencyMs: 1000,
  fanInBudgetMs: 100,
  addedLatencyMs: 200,
  addedRounds: 50,
  addedBudgetMs: 15,
  coldEntries: 100_000,
  coldReadyMs: 2000,
  coldRssBytes: 200 * 2 ** 20,
  coldRssWatchSec: 3,
  maintEntries: 100_000,
  maintBaselineSec: 4,
  maintLagP99Ms: 20,
  uniqueDurationSec: 10,
};

/** Same shape, seconds instead of minutes: proves the harness works, the numbers mean little. */
export const QUICK: Params = {
  ...FULL,
  warmSec: 1,
  durationSec: 2,
  fanInClients: 100,
  fanInLatencyMs: 300,
  addedRounds: 5,
  coldEntries: 5000,
  coldRssWatchSec: 1,
  maintEntries: 5000,
  maintBaselineSec: 1.5,
  uniqueDurationSec: 2,
};

export interface Ctx {
  params: Params;
  tool: LoadTool;
  sim: SimControl;
  fromSource: boolean;
  profileDir: string | undefined;
  useNginx: boolean;
  rows: Rows;
  /** Raw figures per scenario, written to latest.json. */
  raw: Record<string, unknown>;
  log: (msg: string) => void;
  /** Makes this run's queries new to the simulator's render cache and to each other. */
  nonce: string;
  baseQuery: Record<string, any>;
  cleanup: Array<() => Promise<void> | void>;
}

export function withTitle(query: Record<string, any>, title: string): Record<string, any> {
  const q = structuredClone(query);
  const first = q.queries?.[0]?.query;
  if (!first) throw new Error('the benchmark query has no queries[0].query');
  first.query_title = title;
  return q;
}

function cacheDir(ctx: Ctx, prefix = 'kic-bench-cache-'): string {
  const dir = tempDir(prefix);
  ctx.cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function service(
  ctx: Ctx,
  env: Record<string, string> = {},
  cachePath = cacheDir(ctx),
): Promise<ServiceProc> {
  const svc = await startService({
    sim: ctx.sim,
    cachePath,
    fromSource: ctx.fromSource,
    env,
    profileDir: ctx.profileDir,
  });
  ctx.cleanup.push(() => svc.stop().then(() => undefined));
  return svc;
}

/** One load run; a service that died under it is an error, not a low number. */
async function run(
  ctx: Ctx,
  spec: Parameters<LoadTool['run']>[0],
  svc?: ServiceProc,
): Promise<LoadResult> {
  const r = await ctx.tool.run(spec);
  svc?.assertAlive();
  return r;
}

/** Warm-up run (discarded), then the measured run. */
async function measure(
  ctx: Ctx,
  spec: Parameters<LoadTool['run']>[0],
  svc?: ServiceProc,
): Promise<LoadResult> {
  if (ctx.params.warmSec > 0) await run(ctx, { ...spec, durationSec: ctx.params.warmSec }, svc);
  return run(ctx, spec, svc);
}

type LoadSummary = Pick<
  LoadResult,
  'rps' | 'requests' | 'durationSec' | 'p50Ms' | 'p99Ms' | 'maxMs' | 'errors' | 'non2xx'
>;

function loadSummary(r: LoadResult): LoadSummary {
  return {
    rps: round(r.rps),
    requests: r.requests,
    durationSec: round(r.durationSec, 2),
    p50Ms: round(r.p50Ms, 2),
    p99Ms: round(r.p99Ms, 2),
    maxMs: round(r.maxMs, 2),
    errors: r.errors,
    non2xx: r.non2xx,
  };
}

const load1 = (): number => round(os.loadavg()[0] ?? 0, 2);

async function counter(
  base: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const v = metricValue((await scrape(base)).text, name, labels);
  return Number.isNaN(v) ? 0 : v;
}

async function requestCounts(base: string): Promise<{ hit: number; shared: number; miss: number }> {
  const { text } = await scrape(base);
  const get = (result: string): number => {
    const v = metricValue(text, 'kic_cache_requests_total', { result });
    return Number.isNaN(v) ? 0 : v;
  };
  return { hit: get('hit'), shared: get('shared'), miss: get('miss') };
}

// --- the hot image --------------------------------------------------------------------------

export interface HotImage {
  id: string;
  query: Record<string, any>;
  hash: string;
  bytes: Buffer;
  mime: string;
}

/** POSTs the benchmark query with a long ttl and fetches its image once: from now on it is cached. */
export async function hotImage(ctx: Ctx, svc: ServiceProc): Promise<HotImage> {
  const query = withTitle(ctx.baseQuery, `bench hot ${ctx.nonce}`);
  const id = await postRequest(svc.url, JSON.stringify({ api_query: query, ttl: 3600 }));
  const r = await request(`${svc.url}/image/${id}`, { timeoutMs: 120_000 });
  if (r.status !== 200)
    throw new Error(`GET /image answered ${r.status}: ${r.body.toString('utf8').slice(0, 300)}`);
  return {
    id,
    query,
    hash: queryHash(query),
    bytes: r.body,
    mime: String(r.headers['content-type']),
  };
}

// --- 1. hot GET -----------------------------------------------------------------------------

export async function hotGet(ctx: Ctx, svc: ServiceProc, hot: HotImage): Promise<{ rps: number }> {
  const { params: p, rows } = ctx;
  const S = '1 Hot GET';
  const raw: Record<string, unknown> = {
    imageBytes: hot.bytes.length,
    mime: hot.mime,
    loadavgBefore: load1(),
  };

  // All three servers run side by side and take turns, twice, half the time each: whatever else
  // the machine does then weighs on each of them alike.
  const nginxRef = ctx.useNginx ? await startNginx(hot.bytes, hot.mime) : undefined;
  if (nginxRef) ctx.log(`  nginx ${nginxRef.version}`);
  // Not a target: the README's nginx in front of the service, with a proxy_cache added.
  const nginxCache = nginxRef ? await startNginxCache(svc.url, `/image/${hot.id}`) : undefined;
  const bare = await startBareNode(hot.bytes, hot.mime);
  const targets = [
    ...(nginxRef ? [{ name: 'nginx', url: nginxRef.url, svc: undefined }] : []),
    { name: 'bareNode', url: bare.url, svc: undefined },
    { name: 'service', url: `${svc.url}/image/${hot.id}`, svc },
    ...(nginxCache ? [{ name: 'serviceBehindNginxCache', url: nginxCache.url, svc }] : []),
  ];
  const halves: Record<string, LoadResult[]> = {};
  try {
    for (const t of targets)
      if (p.warmSec > 0)
        await run(ctx, { url: t.url, connections: p.connections, durationSec: p.warmSec }, t.svc);
    for (let round = 0; round < 2; round++) {
      for (const t of targets)
        (halves[t.name] ??= []).push(
          await run(
            ctx,
            { url: t.url, connections: p.connections, durationSec: p.durationSec / 2 },
            t.svc,
          ),
        );
    }
  } finally {
    await nginxRef?.stop();
    await nginxCache?.stop();
    await bare.stop();
  }
  const combine = (rs: LoadResult[]): LoadResult => {
    const requests = rs.reduce((n, r) => n + r.requests, 0);
    const durationSec = rs.reduce((n, r) => n + r.durationSec, 0);
    // Percentiles do not add up: the worse half is reported.
    return {
      ...rs[0]!,
      requests,
      durationSec,
      rps: requests / durationSec,
      p50Ms: Math.max(...rs.map((r) => r.p50Ms)),
      p99Ms: Math.max(...rs.map((r) => r.p99Ms)),
      maxMs: Math.max(...rs.map((r) => r.maxMs)),
      errors: rs.reduce((n, r) => n + r.errors, 0),
      non2xx: rs.reduce((n, r) => n + r.non2xx, 0),
    };
  };
  const nginx = halves.nginx ? combine(halves.nginx) : undefined;
  const bareResult = combine(halves.bareNode!);
  const mine = combine(halves.service!);
  if (nginx)
    raw.nginx = {
      version: nginxRef?.version,
      ...loadSummary(nginx),
      halvesRps: halves.nginx!.map((r) => round(r.rps)),
    };
  raw.bareNode = {
    ...loadSummary(bareResult),
    halvesRps: halves.bareNode!.map((r) => round(r.rps)),
  };
  raw.service = { ...loadSummary(mine), halvesRps: halves.service!.map((r) => round(r.rps)) };
  const cached = halves.serviceBehindNginxCache
    ? combine(halves.serviceBehindNginxCache)
    : undefined;
  if (cached) raw.serviceBehindNginxCache = loadSummary(cached);
  raw.loadavgAfter = load1();
  ctx.raw.hotGet = raw;

  const size = `${(hot.bytes.length / 1024).toFixed(0)} KB ${hot.mime.replace('image/', '').toUpperCase()}, ${p.connections} conns, ${p.durationSec} s`;
  rows.info(S, `service requests/s (${size})`, fmt.rps(mine.rps));
  rows.info(S, 'service latency p50 / p99', `${fmt.ms(mine.p50Ms)} / ${fmt.ms(mine.p99Ms)}`);
  rows.check(
    S,
    'service errors + non-2xx',
    fmt.int(mine.errors + mine.non2xx),
    '0',
    mine.errors + mine.non2xx === 0,
  );
  if (nginx) {
    rows.info(
      S,
      'nginx requests/s (1 worker, sendfile)',
      fmt.rps(nginx.rps),
      `p50 ${fmt.ms(nginx.p50Ms)} / p99 ${fmt.ms(nginx.p99Ms)}`,
    );
    const ratio = mine.rps / nginx.rps;
    raw.ratioToNginx = round(ratio, 3);
    rows.check(S, 'service / nginx', fmt.ratio(ratio), '≥ 0.70×', ratio >= 0.7);
  } else {
    rows.check(
      S,
      'service / nginx',
      ctx.useNginx ? 'no nginx on PATH' : 'skipped (--no-nginx)',
      '≥ 0.70×',
      undefined,
    );
  }
  rows.info(
    S,
    'bare node:http requests/s (reference)',
    fmt.rps(bareResult.rps),
    `service = ${fmt.ratio(mine.rps / bareResult.rps)} of it`,
  );
  if (cached && nginx) {
    rows.info(
      S,
      'service behind nginx with proxy_cache (README deployment)',
      fmt.rps(cached.rps),
      `${fmt.ratio(cached.rps / nginx.rps)} of nginx; p99 ${fmt.ms(cached.p99Ms)}`,
    );
  }
  return { rps: mine.rps };
}

// --- 2. repeat POST -------------------------------------------------------------------------

export async function repeatPost(
  ctx: Ctx,
  svc: ServiceProc,
  hot: HotImage,
  hotGetRps: number,
): Promise<void> {
  const { params: p, rows, sim } = ctx;
  const S = '2 Repeat POST';
  // The hot entry lives an hour; asking for 5 minutes finds it (rule 1): same id, nothing written.
  const body = JSON.stringify({ api_query: hot.query, ttl: 300 });
  const mark = (await sim.calls()).next;
  if (p.warmSec > 0)
    await run(
      ctx,
      {
        url: `${svc.url}/requests`,
        method: 'POST',
        body,
        connections: p.connections,
        durationSec: p.warmSec,
      },
      svc,
    );
  const before = await requestCounts(svc.url);
  const r = await run(
    ctx,
    {
      url: `${svc.url}/requests`,
      method: 'POST',
      body,
      connections: p.connections,
      durationSec: p.durationSec,
    },
    svc,
  );
  const after = await requestCounts(svc.url);
  const upstream = (await sim.calls(mark)).calls.filter((c) => c.hash === hot.hash).length;
  const ratio = r.rps / hotGetRps;
  const notRule1 = after.shared - before.shared + (after.miss - before.miss);
  ctx.raw.repeatPost = {
    ...loadSummary(r),
    ratioToHotGet: round(ratio, 3),
    rule1Hits: after.hit - before.hit,
    notRule1,
    upstreamCalls: upstream,
  };

  rows.info(
    S,
    'requests/s (rule 1: same id back)',
    fmt.rps(r.rps),
    `p50 ${fmt.ms(r.p50Ms)} / p99 ${fmt.ms(r.p99Ms)}`,
  );
  rows.check(S, 'repeat POST / hot GET', fmt.ratio(ratio), '≥ 0.50×', ratio >= 0.5);
  rows.check(S, 'upstream calls after the first', fmt.int(upstream), '0', upstream === 0);
  rows.check(
    S,
    'POSTs not answered by rule 1, errors',
    `${fmt.int(notRule1)}, ${fmt.int(r.errors + r.non2xx)}`,
    '0, 0',
    notRule1 === 0 && r.errors + r.non2xx === 0,
  );
}

/** Not in the brief: the same query with the same ttl, as a dashboard really sends it (rule 2). */
export async function repeatPostSameTtl(ctx: Ctx, svc: ServiceProc, hot: HotImage): Promise<void> {
  const { params: p, rows, sim } = ctx;
  const S = '2b Repeat POST, same ttl';
  const body = JSON.stringify({ api_query: hot.query, ttl: 3600 });
  const mark = (await sim.calls()).next;
  const before = await requestCounts(svc.url);
  const r = await measure(
    ctx,
    {
      url: `${svc.url}/requests`,
      method: 'POST',
      body,
      connections: p.connections,
      durationSec: p.durationSec,
    },
    svc,
  );
  const after = await requestCounts(svc.url);
  const upstream = (await sim.calls(mark)).calls.filter((c) => c.hash === hot.hash).length;
  const counts = {
    hit: after.hit - before.hit,
    shared: after.shared - before.shared,
    miss: after.miss - before.miss,
  };
  ctx.raw.repeatPostSameTtl = { ...loadSummary(r), ...counts, upstreamCalls: upstream };
  rows.info(
    S,
    'requests/s (rule 2: new id, one entry write each)',
    fmt.rps(r.rps),
    `p50 ${fmt.ms(r.p50Ms)} / p99 ${fmt.ms(r.p99Ms)}`,
  );
  rows.info(
    S,
    'answered shared / hit / miss; upstream calls',
    `${fmt.int(counts.shared)} / ${fmt.int(counts.hit)} / ${fmt.int(counts.miss)}; ${upstream}`,
  );
}

// --- 3. fan-in ------------------------------------------------------------------------------

interface Client {
  postMs: number;
  doneMs: number;
  status: number;
  body: Buffer;
}

export async function fanIn(ctx: Ctx, svc: ServiceProc): Promise<void> {
  const { params: p, rows, sim } = ctx;
  const S = '3 Fan-in';
  const query = withTitle(ctx.baseQuery, `bench fan-in ${ctx.nonce}`);
  const hash = queryHash(query);
  const body = JSON.stringify({ api_query: query, ttl: 300 });
  // Rendered once beforehand: the 1 s is then Kentik's latency, not the simulator's chart.js.
  await sim.warm([query]);
  await sim.setLatency(p.fanInLatencyMs);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  try {
    const mark = (await sim.calls()).next;
    const started = monoMs();
    const clients = await Promise.all(
      Array.from({ length: p.fanInClients }, async (): Promise<Client> => {
        const id = await postRequest(svc.url, body, agent);
        const postMs = monoMs();
        const r = await request(`${svc.url}/image/${id}`, { agent, timeoutMs: 60_000 });
        return { postMs, doneMs: monoMs(), status: r.status, body: r.body };
      }),
    );
    const calls = (await sim.calls(mark)).calls.filter((c) => c.hash === hash);
    const answered = calls[0]?.end ?? Number.NaN;
    const after = clients.map((c) => c.doneMs - answered);
    const ok = clients.filter((c) => c.status === 200);
    const digests = new Set(ok.map((c) => createHash('sha256').update(c.body).digest('hex')));
    const worst = Math.max(...after);
    const lastId = Math.max(...clients.map((c) => c.postMs)) - answered;
    ctx.raw.fanIn = {
      clients: p.fanInClients,
      latencyMs: p.fanInLatencyMs,
      upstreamCalls: calls.length,
      upstreamAnsweredAfterMs: round(answered - started),
      imageAfterUpstreamMs: {
        first: round(Math.min(...after)),
        p50: round(percentile(after, 50)),
        p99: round(percentile(after, 99)),
        max: round(worst),
      },
      lastIdHandedOutRelativeToUpstreamMs: round(lastId),
      postP99Ms: round(
        percentile(
          clients.map((c) => c.postMs - started),
          99,
        ),
      ),
      status200: ok.length,
      distinctImages: digests.size,
      loadavg: load1(),
    };
    rows.check(
      S,
      `upstream calls (${p.fanInClients} clients, latency ${p.fanInLatencyMs} ms)`,
      fmt.int(calls.length),
      'exactly 1',
      calls.length === 1,
    );
    rows.check(
      S,
      'last client has its image, after the upstream answer',
      fmt.ms(worst),
      `≤ ${p.fanInBudgetMs} ms`,
      worst <= p.fanInBudgetMs,
    );
    rows.info(
      S,
      'image after upstream answer: first / p50 / p99',
      `${fmt.ms(Math.min(...after))} / ${fmt.ms(percentile(after, 50))} / ${fmt.ms(percentile(after, 99))}`,
      `all ids handed out ${fmt.ms(-lastId)} before it`,
    );
    rows.check(
      S,
      'clients with a 200 and the same image',
      `${ok.length} / ${p.fanInClients}, ${digests.size} distinct`,
      `all, 1`,
      ok.length === p.fanInClients && digests.size === 1,
    );
  } finally {
    agent.destroy();
    await sim.setLatency(0);
  }
}

// --- 4. added latency -----------------------------------------------------------------------

export async function addedLatency(ctx: Ctx, svc: ServiceProc): Promise<void> {
  const { params: p, rows, sim } = ctx;
  const S = '4 Added latency';
  await sim.setLatency(p.addedLatencyMs);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const totals: number[] = [];
  const added: number[] = [];
  const upstreams: number[] = [];
  try {
    for (let i = 0; i < p.addedRounds; i++) {
      const query = withTitle(ctx.baseQuery, `bench added latency ${ctx.nonce} ${i}`);
      const hash = queryHash(query);
      await sim.warm([query]);
      const mark = (await sim.calls()).next;
      const t0 = monoMs();
      const id = await postRequest(svc.url, JSON.stringify({ api_query: query, ttl: 300 }), agent);
      const r = await request(`${svc.url}/image/${id}`, { agent, timeoutMs: 60_000 });
      const total = monoMs() - t0;
      if (r.status !== 200) throw new Error(`round ${i}: GET /image answered ${r.status}`);
      const call = (await sim.calls(mark)).calls.find((c) => c.hash === hash);
      const upstream = call ? call.end - call.start : Number.NaN;
      totals.push(total);
      upstreams.push(upstream);
      added.push(total - upstream);
    }
  } finally {
    agent.destroy();
    await sim.setLatency(0);
  }
  const budget = p.addedLatencyMs + p.addedBudgetMs;
  const p99 = percentile(totals, 99);
  ctx.raw.addedLatency = {
    rounds: p.addedRounds,
    latencyMs: p.addedLatencyMs,
    totalMs: {
      p50: round(percentile(totals, 50), 2),
      p99: round(p99, 2),
      max: round(Math.max(...totals), 2),
    },
    upstreamMs: {
      p50: round(percentile(upstreams, 50), 2),
      p99: round(percentile(upstreams, 99), 2),
    },
    addedMs: {
      p50: round(percentile(added, 50), 2),
      p99: round(percentile(added, 99), 2),
      max: round(Math.max(...added), 2),
    },
  };
  rows.check(
    S,
    `POST + GET of a new query, p99 (${p.addedRounds} rounds, latency ${p.addedLatencyMs} ms)`,
    fmt.ms(p99),
    `≤ ${budget} ms`,
    p99 <= budget,
  );
  rows.info(
    S,
    'added by the cache p50 / p99 (total − upstream call)',
    `${fmt.ms(percentile(added, 50))} / ${fmt.ms(percentile(added, 99))}`,
    `upstream p50 ${fmt.ms(percentile(upstreams, 50))}`,
  );
}

// --- 5. cold start --------------------------------------------------------------------------

export async function coldStart(ctx: Ctx): Promise<{ generationMsPerEntry: number }> {
  const { params: p, rows } = ctx;
  const S = '5 Cold start';
  const mix = { image: 0.55, error: 0.1, pending: 0.05, expired: 0.3 };
  const spec = {
    count: p.coldEntries,
    mix,
    idsPerQuery: 10,
    blobs: 50,
    blobBytes: 56 * 1024,
    query: ctx.baseQuery,
    pendingQueries: 50,
  };

  // Reference: the same process with an empty cache, to separate Node/Fastify start-up from loading.
  const empty = await readiness(ctx, cacheDir(ctx));

  // (a) Entry files only: a first start, or a restart after a crash before any maintenance pass.
  const filesDir = cacheDir(ctx);
  const ds: Dataset = writeDataset({ dir: filesDir, ...spec });
  ctx.log(`  wrote ${fmt.int(p.coldEntries)} entries in ${ds.generationMs} ms`);
  const files = await readiness(ctx, filesDir);

  // (b) The same data plus the store's index snapshot, which every maintenance pass and every clean
  // shutdown write: the usual restart. Written with the store's own code, listing what a snapshot
  // taken a while ago would (expired entries included; pending ones are never in it).
  const snapDir = cacheDir(ctx);
  const ds2 = writeDataset({ dir: snapDir, ...spec });
  const store = new FsStore(snapDir);
  await store.open();
  await store.checkpoint(ds2.entries);
  const snap = await readiness(ctx, snapDir);

  const live = ds.counts.image + ds.counts.error + ds.counts.pending;
  ctx.raw.coldStart = {
    entries: p.coldEntries,
    mix: ds.counts,
    generationMs: ds.generationMs,
    emptyCache: empty,
    entryFilesOnly: files,
    withSnapshot: snap,
  };

  const label = `${fmt.int(p.coldEntries)} entries: ${Math.round(mix.image * 100)}% image, ${Math.round(mix.error * 100)}% error, ${Math.round(mix.pending * 100)}% pending, ${Math.round(mix.expired * 100)}% expired`;
  const rss = (r: Readiness): boolean | undefined =>
    r.rssPeak === undefined ? undefined : r.rssPeak <= p.coldRssBytes;
  rows.check(
    S,
    `spawn → /readyz 200, entry files only (${label})`,
    fmt.ms(files.readyMs),
    `≤ ${p.coldReadyMs} ms`,
    files.readyMs <= p.coldReadyMs,
  );
  rows.check(
    S,
    'spawn → /readyz 200, with the index snapshot (a normal restart)',
    fmt.ms(snap.readyMs),
    `≤ ${p.coldReadyMs} ms`,
    snap.readyMs <= p.coldReadyMs,
  );
  rows.check(
    S,
    `RSS after start, entry files only (peak in ${p.coldRssWatchSec} s after ready)`,
    fmt.mb(files.rssPeak),
    `≤ ${fmt.mb(p.coldRssBytes)}`,
    rss(files),
  );
  rows.check(
    S,
    'RSS after start, with the index snapshot',
    fmt.mb(snap.rssPeak),
    `≤ ${fmt.mb(p.coldRssBytes)}`,
    rss(snap),
  );
  rows.info(
    S,
    'entries loaded / expected live',
    `${fmt.int(files.entries)} / ${fmt.int(live)} (snapshot: ${fmt.int(snap.entries)})`,
    `empty cache: ready ${fmt.ms(empty.readyMs)}, RSS ${fmt.mb(empty.rssPeak)}`,
  );
  return { generationMsPerEntry: ds.generationMs / p.coldEntries };
}

interface Readiness {
  readyMs: number;
  entries: number;
  rssAtReady: number | undefined;
  rssPeak: number | undefined;
}

async function readiness(ctx: Ctx, cachePath: string): Promise<Readiness> {
  const svc = await startService({
    sim: ctx.sim,
    cachePath,
    fromSource: ctx.fromSource,
    profileDir: ctx.profileDir,
    wait: false,
  });
  try {
    const body = await waitFor(
      '/readyz 200',
      async () => {
        const r = await request(`${svc.url}/readyz`, { timeoutMs: 5000 });
        return r.status === 200
          ? (JSON.parse(r.body.toString('utf8')) as { entries: number })
          : undefined;
      },
      60_000,
      5,
    );
    const readyMs = monoMs() - svc.spawnedAt;
    const rssAtReady = rssBytes(svc.pid);
    let rssPeak = rssAtReady;
    for (let i = 0; i < ctx.params.coldRssWatchSec * 10; i++) {
      await sleep(100);
      const rss = rssBytes(svc.pid);
      if (rss !== undefined) rssPeak = Math.max(rssPeak ?? 0, rss);
    }
    return { readyMs: round(readyMs), entries: body.entries, rssAtReady, rssPeak };
  } finally {
    await svc.stop();
  }
}

// --- 6. maintenance under load --------------------------------------------------------------

export async function maintenanceUnderLoad(
  ctx: Ctx,
  hotGetRps: number,
  generationMsPerEntry: number,
): Promise<void> {
  const { params: p, rows, tool } = ctx;
  const S = '6 Maintenance under load';
  const dir = cacheDir(ctx);

  // The entries must be live when the service loads them and expired when its first maintenance
  // pass runs; the pass is timed by CACHE_MAINTENANCE_PERIOD from start, after a baseline of load.
  const genEstimate = generationMsPerEntry * p.maintEntries * 1.5 + 500;
  const expiresAt = Math.round(Date.now() + genEstimate + 6000);
  const ds = writeDataset({
    dir,
    count: p.maintEntries,
    mix: { image: 0.8, error: 0.2, pending: 0, expired: 0 },
    liveUntil: expiresAt,
    idsPerQuery: 10,
    blobs: 50,
    blobBytes: 56 * 1024,
    query: ctx.baseQuery,
    pendingQueries: 0,
  });
  ctx.log(
    `  wrote ${fmt.int(p.maintEntries)} entries expiring in ${fmt.ms(expiresAt - Date.now())} (took ${ds.generationMs} ms)`,
  );
  const setupSec = 1.5;
  const periodSec = Math.max(
    setupSec + p.warmSec + p.maintBaselineSec + 1,
    (expiresAt - Date.now()) / 1000 + 1,
  );
  const svc = await service(ctx, { CACHE_MAINTENANCE_PERIOD: periodSec.toFixed(2) }, dir);
  const listening = monoMs();
  const passDue = listening + periodSec * 1000;

  const loaded = JSON.parse((await request(`${svc.url}/readyz`)).body.toString('utf8')) as {
    entries: number;
  };
  if (loaded.entries < p.maintEntries) {
    rows.check(
      S,
      'setup',
      `only ${loaded.entries} of ${p.maintEntries} entries were live at start (data set expired too early)`,
      'all',
      false,
    );
    return;
  }
  const hot = await hotImage(ctx, svc);
  const url = `${svc.url}/image/${hot.id}`;
  const stop = new AbortController();
  const running = tool.run({
    url,
    connections: p.connections,
    durationSec: 600,
    signal: stop.signal,
  });
  try {
    await sleep(p.warmSec * 1000);
    const routeCount = (text: string): number =>
      metricValue(text, 'kic_http_requests_total', { route: '/image/:id' });
    const lag = (text: string, q: string): number =>
      metricValue(text, `kic_process_nodejs_eventloop_lag_${q}_seconds`) * 1000;

    // Baseline: the same process, the same load, before the pass. Each scrape resets the
    // event-loop delay histogram (prom-client), so a scrape-to-scrape window is exact.
    const b0 = await scrape(svc.url);
    await sleep(Math.max(0, passDue - 300 - monoMs()));
    const b1 = await scrape(svc.url);
    if (Date.now() < expiresAt) ctx.log('  warning: the pass may start before the entries expire');

    // Pass window: from just before the pass is due until the entries are gone (+ the tail of the pass).
    let firstDrop = Number.NaN;
    const drained = await waitFor(
      'maintenance to remove the expired entries',
      async () => {
        const { entries } = JSON.parse(
          (await request(`${svc.url}/readyz`)).body.toString('utf8'),
        ) as { entries: number };
        if (Number.isNaN(firstDrop) && entries < loaded.entries) firstDrop = monoMs();
        return entries <= loaded.entries - p.maintEntries + 1 ? monoMs() : undefined;
      },
      120_000,
      50,
    );
    await sleep(200);
    const w1 = await scrape(svc.url);
    // Let the pass finish, then read how long it took.
    const passSec = await waitFor(
      'the maintenance pass to finish',
      async () => {
        const t = (await scrape(svc.url)).text;
        return metricValue(t, 'kic_maintenance_duration_seconds_count') >= 1
          ? metricValue(t, 'kic_maintenance_duration_seconds_sum')
          : undefined;
      },
      60_000,
      100,
    );
    stop.abort();
    await running;
    svc.assertAlive();

    const baseRps = (routeCount(b1.text) - routeCount(b0.text)) / ((b1.at - b0.at) / 1000);
    const windowRps = (routeCount(w1.text) - routeCount(b1.text)) / ((w1.at - b1.at) / 1000);
    const windowP99 = lag(w1.text, 'p99');
    const ratio = windowRps / baseRps;
    ctx.raw.maintenance = {
      entries: p.maintEntries,
      maintenancePeriodSec: round(periodSec, 2),
      passDurationMs: round(passSec * 1000),
      passStartedAfterWindowStartMs: round(firstDrop - b1.at),
      entriesGoneAfterWindowStartMs: round(drained - b1.at),
      windowMs: round(w1.at - b1.at),
      baseline: {
        rps: round(baseRps),
        lagP50Ms: round(lag(b1.text, 'p50'), 2),
        lagP99Ms: round(lag(b1.text, 'p99'), 2),
        lagMaxMs: round(lag(b1.text, 'max'), 2),
      },
      duringPass: {
        rps: round(windowRps),
        lagP50Ms: round(lag(w1.text, 'p50'), 2),
        lagP99Ms: round(windowP99, 2),
        lagMaxMs: round(lag(w1.text, 'max'), 2),
      },
      hotGetScenario1Rps: round(hotGetRps),
      loadavg: load1(),
    };
    rows.info(
      S,
      `maintenance pass removing ${fmt.int(p.maintEntries)} expired entries`,
      fmt.ms(passSec * 1000),
      `measured window ${fmt.ms(w1.at - b1.at)}`,
    );
    rows.check(
      S,
      'event-loop delay p99 during the pass (monitorEventLoopDelay)',
      fmt.ms(windowP99),
      `≤ ${p.maintLagP99Ms} ms`,
      windowP99 <= p.maintLagP99Ms,
    );
    rows.info(
      S,
      'event-loop delay p99 / max before the pass, same load',
      `${fmt.ms(lag(b1.text, 'p99'))} / ${fmt.ms(lag(b1.text, 'max'))}`,
      `max during the pass ${fmt.ms(lag(w1.text, 'max'))}`,
    );
    rows.check(
      S,
      'hot GET during the pass / before it',
      `${fmt.ratio(ratio)} (${fmt.rps(windowRps)} vs ${fmt.rps(baseRps)})`,
      '≥ 0.50×',
      ratio >= 0.5,
    );
  } finally {
    stop.abort();
    await running.catch(() => undefined);
    await svc.stop();
  }
}

// --- 7. unique POSTs ------------------------------------------------------------------------

/**
 * New queries as fast as the service takes them, upstream latency 0. Twice: with the upstream
 * answering at once from a pre-rendered PNG (what the service itself can do: real Kentik renders
 * elsewhere), and with the simulator rendering every chart on this machine (it then needs more
 * than a core, so the service gets less than one).
 */
export async function uniquePosts(ctx: Ctx): Promise<void> {
  const { rows } = ctx;
  const S = '7 Unique POSTs';
  const canned = await uniqueRun(ctx, true);
  const rendered = await uniqueRun(ctx, false);
  ctx.raw.uniquePosts = { cannedUpstream: canned, renderingSimulator: rendered };
  const cores = (r: UniqueRun): string =>
    `CPU: service ${r.serviceCores} cores, simulator ${r.simulatorCores}`;
  rows.info(
    S,
    `requests/s, upstream answers at once (${ctx.params.connections} conns)`,
    fmt.rps(canned.rps),
    `p50 ${fmt.ms(canned.p50Ms)} / p99 ${fmt.ms(canned.p99Ms)}`,
  );
  rows.info(
    S,
    '  upstream calls done during the run / queued at its end',
    `${fmt.int(canned.upstreamCalls)} / ${fmt.int(canned.upstreamQueued)}`,
    cores(canned),
  );
  rows.info(
    S,
    'requests/s, simulator rendering every chart here',
    fmt.rps(rendered.rps),
    `p50 ${fmt.ms(rendered.p50Ms)} / p99 ${fmt.ms(rendered.p99Ms)}`,
  );
  rows.info(
    S,
    '  upstream calls done during the run / queued at its end',
    `${fmt.int(rendered.upstreamCalls)} / ${fmt.int(rendered.upstreamQueued)}`,
    cores(rendered),
  );
  const bad = canned.errors + canned.non2xx + rendered.errors + rendered.non2xx;
  rows.check(S, 'errors + non-2xx', fmt.int(bad), '0', bad === 0);
}

interface UniqueRun extends LoadSummary {
  upstreamCalls: number;
  upstreamQueued: number;
  serviceCores: number;
  simulatorCores: number;
}

async function uniqueRun(ctx: Ctx, canned: boolean): Promise<UniqueRun> {
  const { params: p, sim } = ctx;
  // A fresh instance each time: the thousands of fetches a run queues die with it.
  const svc = await service(ctx);
  try {
    if (canned) await sim.canned((await hotImage(ctx, svc)).bytes);
    const body = JSON.stringify({
      api_query: withTitle(
        ctx.baseQuery,
        `bench unique ${ctx.nonce} ${canned ? 'c' : 'r'} ${UNIQUE_MARKER}`,
      ),
      ttl: 300,
    });
    const url = `${svc.url}/requests`;
    if (p.warmSec > 0)
      await run(
        ctx,
        {
          url,
          method: 'POST',
          body,
          unique: true,
          connections: p.connections,
          durationSec: p.warmSec,
        },
        svc,
      );
    const mark = (await sim.calls()).next;
    const simCpu0 = await sim.cpuMs();
    const svcCpu0 = cpuMsOf(svc.pid);
    const r = await run(
      ctx,
      {
        url,
        method: 'POST',
        body,
        unique: true,
        connections: p.connections,
        durationSec: p.uniqueDurationSec,
      },
      svc,
    );
    const simCpu = (await sim.cpuMs()) - simCpu0;
    const svcCpu1 = cpuMsOf(svc.pid);
    const svcCpu = svcCpu0 !== undefined && svcCpu1 !== undefined ? svcCpu1 - svcCpu0 : Number.NaN;
    const upstreamCalls = (await sim.calls(mark)).calls.length;
    const upstreamQueued = await counter(svc.url, 'kic_upstream_queued');
    const wall = r.durationSec * 1000;
    return {
      ...loadSummary(r),
      upstreamCalls,
      upstreamQueued,
      serviceCores: round(svcCpu / wall, 2),
      simulatorCores: round(simCpu / wall, 2),
    };
  } finally {
    if (canned) await sim.canned(undefined);
    await svc.stop();
  }
}
