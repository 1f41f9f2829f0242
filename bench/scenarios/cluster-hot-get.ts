/**
 * 9. Cluster hot GET: the same hot image served by a Redis-mode replica and by a filesystem-mode
 * service, side by side in this run, taking turns twice (half the time each) so that whatever
 * else the machine does weighs on both alike. A hot GET in Redis mode is answered from the
 * replica's memory and must not touch Redis: target ≥ 0.9× the filesystem figure.
 */
import { redisForBench, redisReplicas } from '../lib/cluster.ts';
import { hotImage, loadSummary, run, service, type Ctx, type ServiceProc } from '../lib/context.ts';
import { metricValue, scrape } from '../lib/http.ts';
import type { LoadResult } from '../lib/load.ts';
import { fmt } from '../lib/report.ts';
import { round } from '../lib/util.ts';

export async function clusterHotGet(ctx: Ctx): Promise<void> {
  const { params: p, rows } = ctx;
  const S = '9 Cluster hot GET';
  const redis = await redisForBench(ctx);
  const [replica] = await redisReplicas(ctx, redis, 1, 'kic-hot:');
  const fs = await service(ctx);
  try {
    const targets: Array<{ name: 'filesystem' | 'redis'; svc: ServiceProc; url: string }> = [];
    for (const [name, svc] of [
      ['filesystem', fs],
      ['redis', replica!],
    ] as const) {
      const hot = await hotImage(ctx, svc);
      targets.push({ name, svc, url: `${svc.url}/image/${hot.id}` });
    }
    const redisCalls = async (): Promise<number> => {
      const info = await redis.info('stats');
      return Number(info.total_commands_processed ?? Number.NaN);
    };
    for (const t of targets)
      if (p.warmSec > 0)
        await run(ctx, { url: t.url, connections: p.connections, durationSec: p.warmSec }, t.svc);
    const halves: Record<string, LoadResult[]> = { filesystem: [], redis: [] };
    const memHits0 = metricValue((await scrape(replica!.url)).text, 'kic_memory_hits_total');
    const cmds0 = await redisCalls();
    // A B B A: neither mode always runs first, or right after the other's load.
    for (let i = 0; i < 2; i++)
      for (const t of i === 0 ? targets : [...targets].reverse())
        halves[t.name]!.push(
          await run(
            ctx,
            { url: t.url, connections: p.connections, durationSec: p.durationSec / 2 },
            t.svc,
          ),
        );
    // Commands Redis ran during the load (the INFO calls themselves count: a handful).
    const cmds = (await redisCalls()) - cmds0;
    const memHits =
      metricValue((await scrape(replica!.url)).text, 'kic_memory_hits_total') - memHits0;
    const combine = (rs: LoadResult[]) => {
      const requests = rs.reduce((n, r) => n + r.requests, 0);
      const durationSec = rs.reduce((n, r) => n + r.durationSec, 0);
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
    const fsR = combine(halves.filesystem!);
    const redisR = combine(halves.redis!);
    const ratio = redisR.rps / fsR.rps;
    ctx.raw.clusterHotGet = {
      filesystem: { ...loadSummary(fsR), halvesRps: halves.filesystem!.map((r) => round(r.rps)) },
      redis: { ...loadSummary(redisR), halvesRps: halves.redis!.map((r) => round(r.rps)) },
      ratio: round(ratio, 3),
      redisCommandsDuringLoad: cmds,
      memoryHits: memHits,
    };
    rows.info(
      S,
      `Redis-mode replica requests/s (${p.connections} conns, ${p.durationSec} s)`,
      fmt.rps(redisR.rps),
      `p50 ${fmt.ms(redisR.p50Ms)} / p99 ${fmt.ms(redisR.p99Ms)}`,
    );
    rows.info(
      S,
      'filesystem mode requests/s, same run',
      fmt.rps(fsR.rps),
      `p50 ${fmt.ms(fsR.p50Ms)} / p99 ${fmt.ms(fsR.p99Ms)}`,
    );
    rows.check(S, 'Redis mode / filesystem mode', fmt.ratio(ratio), '≥ 0.90×', ratio >= 0.9, {
      value: ratio,
      target: 0.9,
      better: 'higher',
    });
    // Background work (lease renewals, the slow re-check) runs Redis commands too, whatever the load.
    const perGet = cmds / redisR.requests;
    rows.check(
      S,
      'Redis commands per hot GET (all commands during the runs / GETs)',
      `${perGet.toFixed(4)} (${fmt.int(cmds)} / ${fmt.int(redisR.requests)}); memory hits ${fmt.int(memHits)}`,
      '< 0.01',
      perGet < 0.01,
    );
    const bad = redisR.errors + redisR.non2xx + fsR.errors + fsR.non2xx;
    rows.check(S, 'errors + non-2xx', fmt.int(bad), '0', bad === 0);
  } finally {
    await Promise.all([replica!.stop(), fs.stop()]);
    await redis.stop();
  }
}
