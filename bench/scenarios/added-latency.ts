/** 4. Added latency: POST + GET of a new query, one at a time, against the upstream call alone. */
import http from 'node:http';
import { queryHash } from '../../src/domain/hash.ts';
import { type Ctx, type ServiceProc, hotImage, withTitle } from '../lib/context.ts';
import { postRequest, request } from '../lib/http.ts';
import { fmt } from '../lib/report.ts';
import { monoMs, percentile, round } from '../lib/util.ts';

export async function addedLatency(ctx: Ctx, svc: ServiceProc): Promise<void> {
  const { params: p, rows, sim } = ctx;
  const S = '4 Added latency';
  // The simulator answers every call with this PNG (made unique per call) instead of rendering:
  // the upstream call is then its latency alone, and no round waits for a chart to be drawn first.
  await sim.canned((await hotImage(ctx, svc)).bytes);
  await sim.setLatency(p.addedLatencyMs);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const totals: number[] = [];
  const added: number[] = [];
  const upstreams: number[] = [];
  try {
    for (let i = 0; i < p.addedRounds; i++) {
      const query = withTitle(ctx.baseQuery, `bench added latency ${ctx.nonce} ${i}`);
      const hash = queryHash(query);
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
    await sim.canned(undefined);
  }
  const p99 = percentile(totals, 99);
  const upstreamP99 = percentile(upstreams, 99);
  // Against the upstream calls measured in the same rounds, not the configured latency: the
  // simulator's own jitter is not ours.
  const budget = upstreamP99 + p.addedBudgetMs;
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
    `≤ upstream p99 ${fmt.ms(upstreamP99)} + ${p.addedBudgetMs} ms`,
    p99 <= budget,
    { value: p99, target: budget, better: 'lower' },
  );
  rows.info(
    S,
    'added by the cache p50 / p99 (total − upstream call)',
    `${fmt.ms(percentile(added, 50))} / ${fmt.ms(percentile(added, 99))}`,
    `upstream p50 ${fmt.ms(percentile(upstreams, 50))}`,
  );
}
