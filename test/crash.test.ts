/**
 * Item 1 of the reliability issue: SIGKILL at random instants under concurrent POSTs, GETs and
 * readiness probes, restart on the same CACHE_PATH, and check that nothing promised was lost and
 * nothing torn or wrong was ever served.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryHash } from '../src/domain/hash.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { buildService } from './support/build.ts';
import {
  getJson,
  kentikQuery,
  removeDir,
  startService,
  tempDir,
  type LogLine,
  type Service,
} from './support/index.ts';

const KILLS = 20;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Issued {
  id: string;
  hash: string;
  /** The round (service start) in which a client first received it. */
  round: number;
  /** Epoch ms, from the id. */
  expiresAt: number;
  /** sha256 of the bytes this id was served with, once it has been. */
  served?: string;
}

/** Ids in the form <hash>_<seconds>; the cache answers 404 for them from this instant on. */
const expiryOf = (id: string): number => Math.round(Number(id.split('_')[1]) * 1000);

/** Temporary files anywhere in the cache directory (root, entries/, blobs/). */
function tempFiles(root: string): string[] {
  const out: string[] = [];
  for (const dir of [root, path.join(root, 'entries'), path.join(root, 'blobs')]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir))
      if (name.startsWith('.tmp-')) out.push(path.join(dir, name));
  }
  return out;
}

/** Resolves with the `n`th log line matching `pred` (counting lines already printed). */
function nthLog(
  svc: Service,
  n: number,
  pred: (l: LogLine) => boolean,
  timeoutMs = 20_000,
): Promise<LogLine> {
  let seen = 0;
  return svc.waitForLog((l) => pred(l) && ++seen === n, timeoutMs);
}

async function forEachLimited<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

describe('SIGKILL at random instants', () => {
  let sim: Simulator;
  let entry: string;
  const cachePath = tempDir('kic-crash-');
  const services: Service[] = [];
  const issued = new Map<string, Issued>();
  const problems: string[] = [];
  const queries = Array.from({ length: 12 }, (_, i) =>
    kentikQuery(`crash-${i}`, ['png', 'svg', 'png', 'jpeg'][i % 4]),
  );
  const burstQueries = Array.from({ length: 4 }, (_, i) =>
    kentikQuery(`crash-burst-${i}`, ['png', 'svg'][i % 2]),
  );
  // Short ttls expire during the run; a long one now and then gives later POSTs a rule-1 hit.
  const ttl = (): number =>
    Math.random() < 0.05 ? 600 : [2, 5, 20, 60][Math.floor(Math.random() * 4)]!;
  const counts = {
    posts: 0,
    gets: 0,
    probes: 0,
    served: 0,
    verified: 0,
    expired404: 0,
    resumed: 0,
    leftoverTemps: 0,
  };
  let currentRound = 0;

  beforeAll(async () => {
    // Latency with jitter, so kills land while fetches are queued, in flight and being stored.
    sim = await startSimulator({
      email: 'test@example.com',
      token: 'test-token-DO-NOT-LEAK',
      faults: { latencyMs: 80, jitterMs: 400 },
    });
    entry = await buildService();
  });
  afterAll(async () => {
    for (const s of services) await s.stop('SIGKILL');
    await sim.close();
    removeDir(cachePath);
  });

  const env = (): Record<string, string> => ({
    KENTIK_API_URL: sim.url,
    KENTIK_API_RETRIES: '1',
    KENTIK_API_TIMEOUT: '10',
    KENTIK_API_BACKOFF: '0.05',
    ENTRY_WAIT_TIMEOUT: '20',
    CACHE_MAINTENANCE_PERIOD: '0.2',
    // Short: some new ids share a finished image, most start a fetch of their own.
    REUSE_WINDOW: '1',
  });

  /** Checks one GET answer for `it` and records what was served. */
  async function checkAnswer(it: Issued, res: Response, when: string): Promise<void> {
    const bytes = Buffer.from(await res.arrayBuffer());
    if (res.status === 200) {
      const digest = sha(bytes);
      counts.served++;
      if (res.headers.get('etag') !== `"${digest}"`)
        problems.push(`${when}: ${it.id} served bytes that do not match its ETag (torn?)`);
      const produced = sim.stats().byHash[it.hash]?.digests ?? [];
      if (!produced.includes(digest))
        problems.push(
          `${when}: ${it.id} served ${bytes.length} bytes the simulator never produced for its query`,
        );
      if (it.served !== undefined && it.served !== digest)
        problems.push(`${when}: ${it.id} changed its image (${it.served} → ${digest})`);
      it.served = digest;
    } else if (res.status === 404 && it.expiresAt <= Date.now()) {
      counts.expired404++;
    } else {
      // With what each service start logged about this id: which rule handed it out, and when.
      const history = services.flatMap((s, i) =>
        s.output.filter((l) => l.includes(it.id)).map((l) => `start ${i + 1}: ${l.slice(0, 300)}`),
      );
      problems.push(
        `${when}: GET ${it.id} (expires in ${it.expiresAt - Date.now()} ms) answered ${res.status} ${bytes.toString('utf8').slice(0, 300)}\n${history.slice(-6).join('\n')}`,
      );
    }
  }

  /**
   * Unexpired ids must be served correctly (pending ones complete now): every id issued since the
   * last start (the ones the kill put at risk) and a sample of older ones, or all with `all`.
   */
  async function verify(svc: Service, when: string, all = false): Promise<void> {
    const live = [...issued.values()].filter((i) => i.expiresAt > Date.now() + 50);
    const recent = live.filter((i) => i.round === currentRound - 1);
    const older = live.filter((i) => i.round !== currentRound - 1).sort(() => Math.random() - 0.5);
    const chosen = all ? live : [...recent, ...older.slice(0, 100)];
    counts.verified += chosen.length;
    await forEachLimited(chosen, 16, async (it) =>
      checkAnswer(it, await fetch(`${svc.url}/image/${it.id}`), when),
    );
  }

  /**
   * Concurrent traffic until `stop()`: POSTs of a fixed set of queries with mixed ttls, bursts of
   * identical POSTs (rule-1 hits on an id still being written), GETs of issued ids (often the
   * newest, which are likely still pending) and readiness probes (which write a check file).
   * Network errors are expected only once the process has been killed.
   */
  function drive(svc: Service, when: string): { stop: (killed: boolean) => Promise<void> } {
    let stopped = false;
    let killed = false;
    let newest: Issued | undefined;
    const loop = async (op: () => Promise<void>): Promise<void> => {
      while (!stopped) {
        try {
          await op();
        } catch (err) {
          if (!killed)
            problems.push(
              `${when}: request failed while the service was up: ${(err as Error).message}`,
            );
          return;
        }
      }
    };
    const postOne = async (q: Record<string, unknown>, ttlSeconds: number): Promise<void> => {
      counts.posts++;
      const res = await fetch(`${svc.url}/requests`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ api_query: q, ttl: ttlSeconds }),
      });
      const text = await res.text();
      if (res.status !== 200) {
        problems.push(`${when}: POST answered ${res.status} ${text.slice(0, 200)}`);
        return;
      }
      // The client holds this id now: from here on the service owes it an image.
      const id = (JSON.parse(text) as { id: string }).id;
      const it = issued.get(id) ?? {
        id,
        hash: queryHash(q),
        round: currentRound,
        expiresAt: expiryOf(id),
      };
      if (it.hash !== id.slice(0, 64))
        problems.push(`${when}: POST answered id ${id} for query ${it.hash}`);
      issued.set(id, it);
      newest = it;
    };
    const post = (): Promise<void> =>
      postOne(queries[Math.floor(Math.random() * queries.length)]!, ttl());
    // A new longest-lived id and, at the same moment, shorter requests for the same query: those
    // are rule-1 hits on an id whose first write may still be in flight.
    // Own queries and a fixed ttl, so every burst creates a new id (a later expiry than the last).
    const burst = async (): Promise<void> => {
      const q = burstQueries[Math.floor(Math.random() * burstQueries.length)]!;
      await Promise.all([
        postOne(q, 60),
        ...Array.from({ length: 4 }, () => postOne(q, 1 + Math.floor(Math.random() * 50))),
      ]);
    };
    const get = async (): Promise<void> => {
      const all = [...issued.values()];
      const it =
        Math.random() < 0.4 && newest ? newest : all[Math.floor(Math.random() * all.length)];
      if (!it) return sleep(5);
      counts.gets++;
      await checkAnswer(it, await fetch(`${svc.url}/image/${it.id}`), when);
    };
    const probe = async (): Promise<void> => {
      counts.probes++;
      const res = await fetch(`${svc.url}/readyz`);
      await res.arrayBuffer();
      if (res.status !== 200) problems.push(`${when}: /readyz answered ${res.status}`);
    };
    const running = Promise.all([
      ...Array.from({ length: 3 }, () => loop(post)),
      loop(burst),
      ...Array.from({ length: 4 }, () => loop(get)),
      loop(probe),
    ]);
    return {
      stop: async (wasKilled) => {
        killed = wasKilled;
        stopped = true;
        await running;
      },
    };
  }

  /** Start on the shared CACHE_PATH and check the start itself. */
  async function start(when: string): Promise<Service> {
    const leftovers = tempFiles(cachePath);
    counts.leftoverTemps += leftovers.length;
    const svc = await startService(env(), { cachePath, entry }); // rejects if it does not come up
    services.push(svc);
    const loaded = await svc.waitForLog((l) => l.msg === 'cache loaded');
    counts.resumed += loaded.resumed as number;
    // Atomic writes: a kill never leaves a record that cannot be read.
    expect(loaded.quarantined, `${when}: quarantined files at start`).toBe(0);
    // The first maintenance pass removes whatever temporary files the kill left behind.
    await svc.waitForLog((l) => l.msg === 'maintenance pass');
    expect(
      leftovers.filter(existsSync),
      `${when}: temporary files that survived the first maintenance pass`,
    ).toEqual([]);
    return svc;
  }

  it(
    `loses nothing and serves nothing wrong across ${KILLS} kills`,
    { timeout: 240_000 },
    async () => {
      const started = Date.now();
      for (let round = 1; round <= KILLS; round++) {
        currentRound = round;
        const when = `round ${round}`;
        const svc = await start(when);
        await verify(svc, `${when} (after restart)`);
        const traffic = drive(svc, when);
        await sleep(100 + Math.random() * 1200); // the random instant
        const stopping = traffic.stop(true);
        svc.proc.kill('SIGKILL');
        expect(await svc.exited).toBe('SIGKILL');
        await stopping;
        expect(problems, when).toEqual([]);
      }

      // One more start: everything issued is still owed, then a clean stop.
      currentRound = KILLS + 1;
      const svc = await start('final start');
      await verify(svc, 'final start', true);
      const traffic = drive(svc, 'final traffic');
      await sleep(500);
      await traffic.stop(false);
      await verify(svc, 'final check', true);
      let info = await getJson(`${svc.url}/info?limit=0`);
      while (info.pending_count > 0) info = await getJson(`${svc.url}/info?limit=0`);
      // With nothing being written any more, no temporary file survives the next full pass.
      const quiet = Date.now();
      await nthLog(svc, 2, (l) => l.msg === 'maintenance pass' && (l.time as number) > quiet);
      expect(tempFiles(cachePath)).toEqual([]);
      expect(await svc.stop('SIGTERM')).toBe(0);

      expect(problems).toEqual([]);
      for (const s of services) {
        const bad = s
          .logs()
          .filter((l) =>
            /unhandled|unreadable cache file|does not match its digest|damaged/.test(l.msg),
          );
        expect(bad.map((l) => l.msg)).toEqual([]);
      }
      // The scenario really exercised what it claims to: many ids, fetches cut off by kills.
      const servedIds = [...issued.values()].filter((i) => i.served !== undefined).length;
      expect(servedIds).toBeGreaterThan(50);
      expect(counts.resumed).toBeGreaterThan(0);
      console.log(
        `crash test: ${KILLS} kills in ${((Date.now() - started) / 1000).toFixed(1)} s; ${issued.size} ids issued (${servedIds} served), ` +
          `${counts.posts} POSTs, ${counts.gets} GETs, ${counts.probes} probes, ${counts.verified} ids verified after restarts, ${counts.served} images checked, ` +
          `${counts.expired404} expired 404s, ${counts.resumed} fetches resumed after a kill, ${counts.leftoverTemps} temp files left by kills`,
      );
    },
  );
});
