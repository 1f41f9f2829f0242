/** 5. Cold start: spawn to /readyz 200 with 100k entries on disk, and the memory it takes. */
import { FsStore } from '../../src/store/fs-store.ts';
import { rssBytes } from '../../test/support/index.ts';
import { type Ctx, cacheDir } from '../lib/context.ts';
import { writeDataset, type Dataset } from '../lib/dataset.ts';
import { request } from '../lib/http.ts';
import { fmt } from '../lib/report.ts';
import { startBenchService } from '../lib/service.ts';
import { monoMs, round, sleep, waitFor } from '../lib/util.ts';

export async function coldStart(ctx: Ctx): Promise<{ generationMsPerEntry: number }> {
  const { params: p, rows } = ctx;
  const S = '5 Cold start';
  const mix = { image: 0.55, error: 0.1, pending: 0.05, expired: 0.3 };
  const spec = {
    count: p.coldEntries,
    mix,
    idsPerQuery: 10,
    blobs: 50,
    blobBytes: 56 * 1024,
    query: ctx.baseQuery,
    pendingQueries: 50,
  };

  // Reference: the same process with an empty cache, to separate Node/Fastify start-up from loading.
  const empty = await readiness(ctx, cacheDir(ctx));

  // (a) The journal only: a restart after a crash before any compaction.
  const filesDir = cacheDir(ctx);
  const ds: Dataset = writeDataset({ dir: filesDir, ...spec });
  ctx.log(`  wrote ${fmt.int(p.coldEntries)} entries in ${ds.generationMs} ms`);
  const files = await readiness(ctx, filesDir);

  // (b) The same data compacted into the store's index snapshot, as maintenance passes and clean
  // shutdowns leave it: the usual restart. Written with the store's own code, listing what a
  // snapshot taken a while ago would (expired entries included).
  const snapDir = cacheDir(ctx);
  const ds2 = writeDataset({ dir: snapDir, ...spec });
  const store = new FsStore(snapDir);
  await store.open();
  await store.checkpoint(ds2.entries);
  await store.close(); // releases anything it holds on CACHE_PATH before the service starts there
  const snap = await readiness(ctx, snapDir);

  const live = ds.counts.image + ds.counts.error + ds.counts.pending;
  ctx.raw.coldStart = {
    entries: p.coldEntries,
    mix: ds.counts,
    generationMs: ds.generationMs,
    emptyCache: empty,
    entryFilesOnly: files,
    withSnapshot: snap,
  };

  const label = `${fmt.int(p.coldEntries)} entries: ${Math.round(mix.image * 100)}% image, ${Math.round(mix.error * 100)}% error, ${Math.round(mix.pending * 100)}% pending, ${Math.round(mix.expired * 100)}% expired`;
  const rss = (r: Readiness): boolean | undefined =>
    r.rssPeak === undefined ? undefined : r.rssPeak <= p.coldRssBytes;
  rows.check(
    S,
    `spawn → /readyz 200, journal only (${label})`,
    fmt.ms(files.readyMs),
    `≤ ${p.coldReadyMs} ms`,
    files.readyMs <= p.coldReadyMs,
    { value: files.readyMs, target: p.coldReadyMs, better: 'lower' },
  );
  rows.check(
    S,
    'spawn → /readyz 200, with the index snapshot (a normal restart)',
    fmt.ms(snap.readyMs),
    `≤ ${p.coldReadyMs} ms`,
    snap.readyMs <= p.coldReadyMs,
    { value: snap.readyMs, target: p.coldReadyMs, better: 'lower' },
  );
  rows.check(
    S,
    `RSS after start, journal only (peak in ${p.coldRssWatchSec} s after ready)`,
    fmt.mb(files.rssPeak),
    `≤ ${fmt.mb(p.coldRssBytes)}`,
    rss(files),
    files.rssPeak !== undefined
      ? { value: files.rssPeak / 2 ** 20, target: p.coldRssBytes / 2 ** 20, better: 'lower' }
      : undefined,
  );
  rows.check(
    S,
    'RSS after start, with the index snapshot',
    fmt.mb(snap.rssPeak),
    `≤ ${fmt.mb(p.coldRssBytes)}`,
    rss(snap),
    snap.rssPeak !== undefined
      ? { value: snap.rssPeak / 2 ** 20, target: p.coldRssBytes / 2 ** 20, better: 'lower' }
      : undefined,
  );
  rows.info(
    S,
    'entries loaded / expected live',
    `${fmt.int(files.entries)} / ${fmt.int(live)} (snapshot: ${fmt.int(snap.entries)})`,
    `empty cache: ready ${fmt.ms(empty.readyMs)}, RSS ${fmt.mb(empty.rssPeak)}`,
  );
  // Ready implies listening: the figure is an upper bound of the "listening ≤ 300 ms".
  rows.check(
    S,
    'empty cache: spawn of node dist/server.js → /readyz 200',
    fmt.ms(empty.readyMs),
    `≤ ${p.emptyStartMs} ms`,
    empty.readyMs <= p.emptyStartMs,
    { value: empty.readyMs, target: p.emptyStartMs, better: 'lower' },
  );
  return { generationMsPerEntry: ds.generationMs / p.coldEntries };
}

interface Readiness {
  readyMs: number;
  entries: number;
  rssAtReady: number | undefined;
  rssPeak: number | undefined;
}

async function readiness(ctx: Ctx, cachePath: string): Promise<Readiness> {
  const svc = await startBenchService({
    sim: ctx.sim,
    cachePath,
    fromSource: ctx.fromSource,
    profileDir: ctx.profileDir,
    wait: false,
  });
  try {
    const body = await waitFor(
      '/readyz 200',
      async () => {
        const r = await request(`${svc.url}/readyz`, { timeoutMs: 5000 });
        return r.status === 200
          ? (JSON.parse(r.body.toString('utf8')) as { entries: number })
          : undefined;
      },
      60_000,
      5,
    );
    const readyMs = monoMs() - svc.spawnedAt;
    const rssAtReady = rssBytes(svc.pid);
    let rssPeak = rssAtReady;
    for (let i = 0; i < ctx.params.coldRssWatchSec * 10; i++) {
      await sleep(100);
      const rss = rssBytes(svc.pid);
      if (rss !== undefined) rssPeak = Math.max(rssPeak ?? 0, rss);
    }
    return { readyMs: round(readyMs), entries: body.entries, rssAtReady, rssPeak };
  } finally {
    await svc.stop();
  }
}
