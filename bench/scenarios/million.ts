/**
 * 11. A million entries in the index: the memory it takes, /info?limit=100 over it, and the
 * event-loop delay while a maintenance pass walks it. The data set is written by the shared
 * generator (bench/lib/dataset.ts), in whatever form the store loads fastest.
 */
import { rssBytes } from '../../test/support/index.ts';
import { type Ctx, cacheDir, service } from '../lib/context.ts';
import { writeDataset } from '../lib/dataset.ts';
import { metricValue, request, scrape } from '../lib/http.ts';
import { fmt } from '../lib/report.ts';
import { monoMs, round, sleep, waitFor } from '../lib/util.ts';

export async function millionEntries(ctx: Ctx): Promise<void> {
  const { params: p, rows } = ctx;
  const S = '11 1M entries';
  const dir = cacheDir(ctx);
  const ds = writeDataset({
    dir,
    count: p.millionEntries,
    mix: { image: 0.8, error: 0.15, pending: 0, expired: 0.05 },
    idsPerQuery: 10,
    blobs: 50,
    blobBytes: 56 * 1024,
    query: ctx.baseQuery,
    pendingQueries: 0,
  });
  ctx.log(`  wrote ${fmt.int(p.millionEntries)} entries in ${ds.generationMs} ms`);

  // The first maintenance pass comes a few seconds after the start: RSS and /info are measured
  // before it, the event-loop delay across it.
  const periodSec = 8;
  const started = monoMs();
  const svc = await service(ctx, { CACHE_MAINTENANCE_PERIOD: String(periodSec) }, dir);
  const readyMs = monoMs() - started;
  let rssPeak = rssBytes(svc.pid) ?? 0;
  for (let i = 0; i < 10; i++) {
    await sleep(100);
    rssPeak = Math.max(rssPeak, rssBytes(svc.pid) ?? 0);
  }

  // /info?limit=100: the newest 100 entries and the counts. The first call after the start is
  // the one that may count the whole index; the median of the rest is the usual cost.
  const times: number[] = [];
  for (let i = 0; i < 21; i++) {
    const t = monoMs();
    const r = await request(`${svc.url}/info?limit=100`);
    times.push(monoMs() - t);
    if (r.status !== 200) throw new Error(`GET /info answered ${r.status}`);
  }
  const first = times[0]!;
  const rest = times.slice(1).sort((a, b) => a - b);
  const median = rest[Math.floor(rest.length / 2)]!;

  // Event-loop delay across the pass: each scrape resets the histogram (prom-client), so every
  // poll reads the window since the previous one; the figure is the worst window's p99.
  await scrape(svc.url);
  let worstP99 = 0;
  let worstMax = 0;
  const passSec = await waitFor(
    'the first maintenance pass',
    async () => {
      const t = (await scrape(svc.url)).text;
      worstP99 = Math.max(
        worstP99,
        metricValue(t, 'kic_process_nodejs_eventloop_lag_p99_seconds') * 1000,
      );
      worstMax = Math.max(
        worstMax,
        metricValue(t, 'kic_process_nodejs_eventloop_lag_max_seconds') * 1000,
      );
      return metricValue(t, 'kic_maintenance_duration_seconds_count') >= 1
        ? metricValue(t, 'kic_maintenance_duration_seconds_sum')
        : undefined;
    },
    (periodSec + 120) * 1000,
    500,
  );
  svc.assertAlive();
  await svc.stop();
  rows.info(S, 'spawn → listening', fmt.ms(readyMs), `${fmt.int(p.millionEntries)} entries`);
  ctx.raw.million = {
    entries: p.millionEntries,
    generationMs: ds.generationMs,
    readyMs: round(readyMs),
    rssPeak,
    infoMs: times.map((t) => round(t, 2)),
    passMs: round(passSec * 1000),
    lagP99Ms: round(worstP99, 2),
    lagMaxMs: round(worstMax, 2),
  };
  rows.check(
    S,
    'RSS after start (peak in 1 s)',
    fmt.mb(rssPeak),
    `≤ ${fmt.mb(p.millionRssBytes)}`,
    rssPeak <= p.millionRssBytes,
    { value: rssPeak / 2 ** 20, target: p.millionRssBytes / 2 ** 20, better: 'lower' },
  );
  rows.check(
    S,
    '/info?limit=100, median of 20 (first call)',
    `${fmt.ms(median)} (${fmt.ms(first)})`,
    `≤ ${p.millionInfoMs} ms`,
    median <= p.millionInfoMs,
    { value: median, target: p.millionInfoMs, better: 'lower' },
  );
  rows.check(
    S,
    `event-loop delay p99 across the first maintenance pass (${fmt.ms(passSec * 1000)}; worst 0.5 s window)`,
    fmt.ms(worstP99),
    `≤ ${p.maintLagP99Ms} ms`,
    worstP99 <= p.maintLagP99Ms,
    { value: worstP99, target: p.maintLagP99Ms, better: 'lower' },
  );
}
