/** 6. Maintenance under load: a pass removing 100k expired entries while a hot GET runs. */
import { type Ctx, cacheDir, hotImage, load1, service } from '../lib/context.ts';
import { writeDataset } from '../lib/dataset.ts';
import { metricValue, request, scrape } from '../lib/http.ts';
import { fmt } from '../lib/report.ts';
import { monoMs, round, sleep, waitFor } from '../lib/util.ts';

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
      { value: windowP99, target: p.maintLagP99Ms, better: 'lower' },
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
