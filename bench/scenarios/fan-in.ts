/** 3. Fan-in: many clients POST the same new query at once and wait for its image: one upstream call, and the last client served soon after the upstream answer. */
import http from 'node:http';
import { queryHash } from '../../src/domain/hash.ts';
import { answerHeaders, startBareNode } from '../../test/support/index.ts';
import { type Ctx, type ServiceProc, load1, withTitle } from '../lib/context.ts';
import { rawGet, request } from '../lib/http.ts';
import { fmt } from '../lib/report.ts';
import { monoMs, percentile, round } from '../lib/util.ts';

interface Client {
  postMs: number;
  doneMs: number;
  status: number;
  /** The body's length and CRC-32 (rawGet keeps no 200 body). */
  image: string;
  /** Where it GETs its image. */
  url: string;
  close?: () => void;
}

export function fanIn(ctx: Ctx, svc: ServiceProc): Promise<void> {
  return fanInOver(ctx, [svc], {
    scenario: '3 Fan-in',
    rawKey: 'fanIn',
    budgetMs: ctx.params.fanInBudgetMs,
  });
}

/**
 * The fan-in over one or more replicas: client i POSTs to replica i mod n and GETs its image
 * from replica i+1 mod n (from the same one when there is one), so with several replicas every
 * waiter is woken by a fetch that settled on another replica.
 */
export async function fanInOver(
  ctx: Ctx,
  svcs: ServiceProc[],
  opts: { scenario: string; rawKey: string; budgetMs: number; clients?: number },
): Promise<void> {
  const { params: p, rows, sim } = ctx;
  const S = opts.scenario;
  const n = opts.clients ?? p.fanInClients;
  const query = withTitle(ctx.baseQuery, `bench ${opts.rawKey} ${ctx.nonce}`);
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
      Array.from({ length: n }, async (_, i): Promise<Client> => {
        const posted = await request(`${svcs[i % svcs.length]!.url}/requests`, {
          method: 'POST',
          body,
          agent,
        });
        const postMs = monoMs();
        // A refused POST is a client without its image (counted below), not a broken harness.
        if (posted.status !== 200)
          return { postMs, doneMs: postMs, status: posted.status, image: '', url: '' };
        const id = (JSON.parse(posted.body.toString('utf8')) as { id: string }).id;
        const from = svcs[(i + 1) % svcs.length]!.url;
        const url = `${from}/image/${id}`;
        const r = await rawGet(url, 60_000);
        return {
          postMs,
          doneMs: r.doneMs,
          status: r.status,
          image: `${r.bodyLength}:${r.bodyCrc32}`,
          url,
          close: r.close,
        };
      }),
    );
    for (const c of clients) c.close?.();
    const calls = (await sim.calls(mark)).calls.filter((c) => c.hash === hash);
    const answered = calls[0]?.end ?? Number.NaN;
    const ok = clients.filter((c) => c.status === 200);
    const after = ok.map((c) => c.doneMs - answered);
    const statuses: Record<string, number> = {};
    for (const c of clients) statuses[c.status] = (statuses[c.status] ?? 0) + 1;
    const digests = new Set(ok.map((c) => c.image));
    const worst = Math.max(...after);
    const lastId = Math.max(...clients.map((c) => c.postMs)) - answered;
    ctx.raw[opts.rawKey] = {
      replicas: svcs.length,
      clients: n,
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
      statuses,
      distinctImages: digests.size,
      loadavg: load1(),
    };
    rows.check(
      S,
      `upstream calls (${n} clients${svcs.length > 1 ? ` over ${svcs.length} replicas` : ''}, latency ${p.fanInLatencyMs} ms)`,
      fmt.int(calls.length),
      'exactly 1',
      calls.length === 1,
    );
    rows.check(
      S,
      'last client has its image, after the upstream answer',
      fmt.ms(worst),
      `≤ ${opts.budgetMs} ms`,
      worst <= opts.budgetMs,
      { value: worst, target: opts.budgetMs, better: 'lower' },
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
      `${ok.length} / ${n}, ${digests.size} distinct${ok.length < n ? ` (answers: ${JSON.stringify(statuses)})` : ''}`,
      `all, 1`,
      ok.length === n && digests.size === 1,
    );
    if (svcs.length === 1 && ok[0]) {
      // The floor of the answering alone: bare node:http holding as many GETs and answering them
      // the same bytes and headers at once, read by the same clients. No upstream call, no store.
      const image = await request(ok[0].url);
      const ref = await bareFanIn(image.body, answerHeaders(image.rawHeaders), n);
      (ctx.raw[opts.rawKey] as Record<string, unknown>).bareNodeAfterReleaseMs = ref;
      rows.info(
        S,
        `reference: bare node:http answering ${n} held GETs at once, last / p50 client`,
        `${fmt.ms(ref.max)} / ${fmt.ms(ref.p50)}`,
        'same bytes and headers, same clients',
      );
    }
  } finally {
    agent.destroy();
    await sim.setLatency(0);
  }
}

/** Last and median client of `n` held GETs after the bare server started answering them. */
async function bareFanIn(
  bytes: Buffer,
  headers: string[],
  n: number,
): Promise<{ max: number; p50: number }> {
  const bare = await startBareNode(bytes, headers);
  const base = bare.url.replace(/\/image$/, '');
  try {
    const gets = Array.from({ length: n }, () => rawGet(`${base}/held`, 60_000));
    const released = await request(`${base}/release?n=${n}`, { timeoutMs: 60_000 });
    const { releasedAt } = JSON.parse(released.body.toString('utf8')) as { releasedAt: number };
    const done = await Promise.all(gets);
    for (const g of done) g.close();
    const after = done.map((g) => g.doneMs - releasedAt);
    return { max: round(Math.max(...after)), p50: round(percentile(after, 50)) };
  } finally {
    await bare.stop();
  }
}
