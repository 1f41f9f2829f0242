/** 4. Added latency: POST + GET of a new query, one at a time, against the upstream call alone. */
import http from 'node:http';
import { queryHash } from '../../src/domain/hash.ts';
import { type Reference, startBareCache } from '../../test/support/index.ts';
import { type Ctx, type ServiceProc, hotImage, withTitle } from '../lib/context.ts';
import { postRequest, request } from '../lib/http.ts';
import { fmt } from '../lib/report.ts';
import { monoMs, percentile, round } from '../lib/util.ts';

/** Where one kind of round goes, and what its rounds measured. */
interface Target {
  /** In the query titles: every round is a new query, so a new upstream call. */
  key: string;
  url: string;
  rounds: Array<{ hash: string; total: number }>;
}

/** One round: POST a new query, GET its image (held until it is there); ms from POST to image. */
async function oneRound(
  url: string,
  query: Record<string, any>,
  agent: http.Agent,
  what: string,
): Promise<number> {
  const t0 = monoMs();
  const id = await postRequest(url, JSON.stringify({ api_query: query, ttl: 300 }), agent);
  const r = await request(`${url}/image/${id}`, { agent, timeoutMs: 60_000 });
  const total = monoMs() - t0;
  if (r.status !== 200) throw new Error(`${what}: GET /image answered ${r.status}`);
  return total;
}

export async function addedLatency(ctx: Ctx, svc: ServiceProc): Promise<void> {
  const { params: p, rows, sim } = ctx;
  const S = '4 Added latency';
  // The simulator answers every call with this PNG (made unique per call) instead of rendering:
  // the upstream call is then its latency alone, and no round waits for a chart to be drawn first.
  await sim.canned((await hotImage(ctx, svc)).bytes);
  await sim.setLatency(p.addedLatencyMs);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const refs: Reference[] = [];
  const service: Target = { key: 'service', url: svc.url, rounds: [] };
  const durable: Target = { key: 'durable', url: '', rounds: [] };
  const noFsync: Target = { key: 'no fsync', url: '', rounds: [] };
  const title = (t: Target, i: number | string): string =>
    t === service
      ? `bench added latency ${ctx.nonce} ${i}`
      : `bench added latency ${ctx.nonce} ${t.key} ${i}`;
  let calls: Map<string | null, { start: number; end: number }>;
  try {
    // The machine is noisy: the service's rounds are set beside those of a bare pass-through cache
    // (test/support/bare-cache.ts) with the same fsyncs and without any, on the same upstream,
    // interleaved round by round so that all three see the same machine.
    for (const [t, fsync] of [
      [durable, true],
      [noFsync, false],
    ] as const) {
      const ref = await startBareCache(sim, { fsync });
      refs.push(ref);
      t.url = ref.url;
      // The service has answered hotImage's round: each reference gets one too (its upstream
      // connection, its code warm), not counted.
      await oneRound(t.url, withTitle(ctx.baseQuery, title(t, 'warm-up')), agent, t.key);
    }
    const mark = (await sim.calls()).next;
    for (let i = 0; i < p.addedRounds; i++) {
      for (const t of [service, durable, noFsync]) {
        const query = withTitle(ctx.baseQuery, title(t, i));
        const total = await oneRound(t.url, query, agent, `${t.key} round ${i}`);
        t.rounds.push({ hash: queryHash(query), total });
      }
    }
    // Read once, after the rounds: no call to the simulator's process between them.
    calls = new Map((await sim.calls(mark)).calls.map((c) => [c.hash, c]));
  } finally {
    agent.destroy();
    await Promise.all(refs.map((r) => r.stop()));
    await sim.setLatency(0);
    await sim.canned(undefined);
  }
  /** Each round's total, its upstream call's duration as the proxy saw it, and the difference. */
  const measured = (t: Target): { totals: number[]; upstreams: number[]; added: number[] } => {
    const upstreams = t.rounds.map(({ hash }, i) => {
      const call = calls.get(hash);
      if (!call) throw new Error(`${t.key} round ${i}: the proxy saw no upstream call for it`);
      return call.end - call.start;
    });
    const totals = t.rounds.map((r) => r.total);
    return { totals, upstreams, added: totals.map((total, i) => total - upstreams[i]!) };
  };
  const { totals, upstreams, added } = measured(service);
  const p99 = percentile(totals, 99);
  const upstreamP99 = percentile(upstreams, 99);
  // Against the upstream calls measured in the same rounds, not the configured latency: the
  // simulator's own jitter is not ours.
  const budget = upstreamP99 + p.addedBudgetMs;
  const summary = (m: ReturnType<typeof measured>) => ({
    totalMs: {
      p50: round(percentile(m.totals, 50), 2),
      p99: round(percentile(m.totals, 99), 2),
      max: round(Math.max(...m.totals), 2),
    },
    upstreamMs: {
      p50: round(percentile(m.upstreams, 50), 2),
      p99: round(percentile(m.upstreams, 99), 2),
    },
    addedMs: {
      p50: round(percentile(m.added, 50), 2),
      p99: round(percentile(m.added, 99), 2),
      max: round(Math.max(...m.added), 2),
    },
  });
  const durableM = measured(durable);
  const noFsyncM = measured(noFsync);
  ctx.raw.addedLatency = {
    rounds: p.addedRounds,
    latencyMs: p.addedLatencyMs,
    ...summary({ totals, upstreams, added }),
    reference: { durable: summary(durableM), noFsync: summary(noFsyncM) },
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
  for (const [figure, m] of [
    ['bare durable pass-through (same fsyncs): added p50 / p99', durableM],
    ['bare pass-through without fsync: added p50 / p99', noFsyncM],
  ] as const)
    rows.info(
      S,
      `reference: ${figure}`,
      `${fmt.ms(percentile(m.added, 50))} / ${fmt.ms(percentile(m.added, 99))}`,
      `upstream p99 ${fmt.ms(percentile(m.upstreams, 99))}, interleaved rounds`,
    );
}
