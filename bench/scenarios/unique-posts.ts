/** 7. Unique POSTs: new queries as fast as the service takes them. */
import { cpuMsOf } from '../../test/support/index.ts';
import {
  type Ctx,
  type LoadSummary,
  counter,
  hotImage,
  loadSummary,
  run,
  service,
  withTitle,
} from '../lib/context.ts';
import { fmt } from '../lib/report.ts';
import { round } from '../lib/util.ts';
import { UNIQUE_MARKER } from '../lib/load.ts';

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
  // The targets are for the service itself: the run whose upstream answers at once.
  rows.check(
    S,
    'requests/s, upstream answers at once',
    fmt.rps(canned.rps),
    '≥ 2,000 req/s',
    canned.rps >= 2000,
    {
      value: canned.rps,
      target: 2000,
      better: 'higher',
    },
  );
  rows.check(
    S,
    'latency p99, upstream answers at once',
    fmt.ms(canned.p99Ms),
    '≤ 50 ms',
    canned.p99Ms <= 50,
    {
      value: canned.p99Ms,
      target: 50,
      better: 'lower',
    },
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
