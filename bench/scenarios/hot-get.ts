/** 1. Hot GET: the service serving one cached image, beside nginx and a bare node:http server serving the same bytes, in turns. */
import { cpuMsOf, startBareNode, startNginx, startNginxCache } from '../../test/support/index.ts';
import {
  type Ctx,
  type ServiceProc,
  type HotImage,
  load1,
  loadSummary,
  run,
} from '../lib/context.ts';
import { type LoadResult } from '../lib/load.ts';
import { fmt } from '../lib/report.ts';
import { round } from '../lib/util.ts';

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
  const bare = await startBareNode(hot.bytes, hot.headers);
  const targets = [
    ...(nginxRef ? [{ name: 'nginx', url: nginxRef.url, svc: undefined }] : []),
    { name: 'bareNode', url: bare.url, svc: undefined, pid: bare.pid },
    { name: 'service', url: `${svc.url}/image/${hot.id}`, svc, pid: svc.pid },
    ...(nginxCache ? [{ name: 'serviceBehindNginxCache', url: nginxCache.url, svc }] : []),
  ];
  const halves: Record<string, LoadResult[]> = {};
  // CPU time each Node.js server spent on the measured requests: its cost per request does not
  // depend on what else the machine does, as requests per second on two shared cores do.
  const cpu: Record<string, { ms: number; requests: number }> = {};
  try {
    for (const t of targets)
      if (p.warmSec > 0)
        await run(ctx, { url: t.url, connections: p.connections, durationSec: p.warmSec }, t.svc);
    for (let round = 0; round < 2; round++) {
      for (const t of targets) {
        const pid = 'pid' in t ? t.pid : undefined;
        const before = pid === undefined ? undefined : cpuMsOf(pid);
        const r = await run(
          ctx,
          { url: t.url, connections: p.connections, durationSec: p.durationSec / 2 },
          t.svc,
        );
        const after = pid === undefined ? undefined : cpuMsOf(pid);
        if (before !== undefined && after !== undefined) {
          const c = (cpu[t.name] ??= { ms: 0, requests: 0 });
          c.ms += after - before;
          c.requests += r.requests;
        }
        (halves[t.name] ??= []).push(r);
      }
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
    rows.check(S, 'service / nginx', fmt.ratio(ratio), '≥ 0.70×', ratio >= 0.7, {
      value: ratio,
      target: 0.7,
      better: 'higher',
    });
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
    'bare node:http requests/s (same bytes and headers)',
    fmt.rps(bareResult.rps),
    `p50 ${fmt.ms(bareResult.p50Ms)} / p99 ${fmt.ms(bareResult.p99Ms)}`,
  );
  const ratioToBare = mine.rps / bareResult.rps;
  raw.ratioToBareNode = round(ratioToBare, 3);
  rows.check(
    S,
    'service / bare node:http',
    fmt.ratio(ratioToBare),
    '≥ 0.85×',
    ratioToBare >= 0.85,
    {
      value: ratioToBare,
      target: 0.85,
      better: 'higher',
    },
  );
  const usPerRequest = (name: string): number | undefined => {
    const c = cpu[name];
    return c && c.requests > 0 ? (1000 * c.ms) / c.requests : undefined;
  };
  const usService = usPerRequest('service');
  const usBare = usPerRequest('bareNode');
  if (usService !== undefined && usBare !== undefined) {
    raw.cpuMicrosPerRequest = { service: round(usService, 1), bareNode: round(usBare, 1) };
    rows.info(
      S,
      'CPU per request: service / bare node:http',
      `${usService.toFixed(1)} µs / ${usBare.toFixed(1)} µs`,
      `bare ÷ service ${fmt.ratio(usBare / usService)} : the requests/s ratio when both are bound by their own core`,
    );
  }
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
