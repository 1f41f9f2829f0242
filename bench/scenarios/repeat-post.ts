/** 2 and 2b. Repeat POST: the same query again, as dashboards send it (rule 1: same id; rule 2: same ttl, new id). */
import {
  type Ctx,
  type ServiceProc,
  type HotImage,
  loadSummary,
  measure,
  requestCounts,
  run,
} from '../lib/context.ts';
import { fmt } from '../lib/report.ts';
import { round } from '../lib/util.ts';

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
  rows.check(S, 'repeat POST / hot GET', fmt.ratio(ratio), '≥ 0.50×', ratio >= 0.5, {
    value: ratio,
    target: 0.5,
    better: 'higher',
  });
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
