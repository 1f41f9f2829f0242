/**
 * What every benchmark scenario shares: parameters (full and --quick), the run context, the
 * service as the benchmarks start it, load runs, metric reads and the hot image.
 */
import os from 'node:os';
import { rmSync } from 'node:fs';
import { queryHash } from '../../src/domain/hash.ts';
import { answerHeaders, tempDir, type SimControl } from '../../test/support/index.ts';
import { metricValue, postRequest, request, scrape } from './http.ts';
import type { LoadResult, LoadTool } from './load.ts';
import type { Rows } from './report.ts';
import { startBenchService as startService, type ServiceProc } from './service.ts';
import { round } from './util.ts';

export type { ServiceProc } from './service.ts';

export interface Params {
  /** Seconds of load before each measured run, not counted. */
  warmSec: number;
  durationSec: number;
  connections: number;
  fanInClients: number;
  fanInLatencyMs: number;
  fanInBudgetMs: number;
  /** The same over the cluster's replicas (8): one more hop, through Redis. */
  clusterFanInBudgetMs: number;
  /** Replicas in the cluster scenarios (8, 9), on one redis-server. */
  clusterReplicas: number;
  /** New charts fetched to measure Redis memory per image (10). */
  redisMemoryImages: number;
  addedLatencyMs: number;
  addedRounds: number;
  addedBudgetMs: number;
  coldEntries: number;
  coldReadyMs: number;
  /** The empty cache's start (scenario 5). */
  emptyStartMs: number;
  coldRssBytes: number;
  /** How long after ready RSS is watched for its peak. */
  coldRssWatchSec: number;
  maintEntries: number;
  /** Entries in the index for scenario 11, and its targets. */
  millionEntries: number;
  millionRssBytes: number;
  millionInfoMs: number;
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
  fanInBudgetMs: 50,
  clusterFanInBudgetMs: 100,
  clusterReplicas: 3,
  redisMemoryImages: 200,
  addedLatencyMs: 200,
  // A p99 of 50 rounds is their maximum: one collection or fsync outlier decided it alone.
  addedRounds: 200,
  addedBudgetMs: 10,
  coldEntries: 100_000,
  coldReadyMs: 1000,
  emptyStartMs: 300,
  coldRssBytes: 160 * 2 ** 20,
  coldRssWatchSec: 3,
  maintEntries: 100_000,
  millionEntries: 1_000_000,
  millionRssBytes: 600 * 2 ** 20,
  millionInfoMs: 20,
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
  millionEntries: 20_000,
  maintBaselineSec: 1.5,
  uniqueDurationSec: 2,
  redisMemoryImages: 16,
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

export function cacheDir(ctx: Ctx, prefix = 'kic-bench-cache-'): string {
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
export async function run(
  ctx: Ctx,
  spec: Parameters<LoadTool['run']>[0],
  svc?: ServiceProc,
): Promise<LoadResult> {
  const r = await ctx.tool.run(spec);
  svc?.assertAlive();
  return r;
}

/** Warm-up run (discarded), then the measured run. */
export async function measure(
  ctx: Ctx,
  spec: Parameters<LoadTool['run']>[0],
  svc?: ServiceProc,
): Promise<LoadResult> {
  if (ctx.params.warmSec > 0) await run(ctx, { ...spec, durationSec: ctx.params.warmSec }, svc);
  return run(ctx, spec, svc);
}

export type LoadSummary = Pick<
  LoadResult,
  'rps' | 'requests' | 'durationSec' | 'p50Ms' | 'p99Ms' | 'maxMs' | 'errors' | 'non2xx'
>;

export function loadSummary(r: LoadResult): LoadSummary {
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

export const load1 = (): number => round(os.loadavg()[0] ?? 0, 2);

export async function counter(
  base: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const v = metricValue((await scrape(base)).text, name, labels);
  return Number.isNaN(v) ? 0 : v;
}

export async function requestCounts(
  base: string,
): Promise<{ hit: number; shared: number; miss: number }> {
  const { text } = await scrape(base);
  const get = (result: string): number => {
    const v = metricValue(text, 'kic_cache_requests_total', { result });
    return Number.isNaN(v) ? 0 : v;
  };
  return { hit: get('hit'), shared: get('shared'), miss: get('miss') };
}

export interface HotImage {
  id: string;
  query: Record<string, any>;
  hash: string;
  bytes: Buffer;
  mime: string;
  /** The headers the service answers it with (flat list, without Node's own): the bare reference's. */
  headers: string[];
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
    headers: answerHeaders(r.rawHeaders),
  };
}
