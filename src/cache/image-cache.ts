import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.ts';
import { AppError, StorageError } from '../errors.ts';
import type { KentikClient } from '../kentik/client.ts';
import type { Metrics } from '../metrics.ts';
import type { Store } from '../store/store.ts';
import { StoreWriteError } from '../store/store.ts';
import { BlobCache } from './blobs.ts';
import type { Entry, ErrorEntry, ImageEntry, ImageMime, PendingEntry } from '../domain/entry.ts';
import { bytesDigest, queryHash } from '../domain/hash.ts';
import { formatId } from '../domain/ids.ts';
import { Limiter } from './limiter.ts';
import { Waiters, type WaitOutcome } from './waiters.ts';

/** How a POST was satisfied; see README "How sharing works". */
export type RequestResult = 'hit' | 'shared' | 'miss';

/** One upstream fetch, shared by every id that asked for the same query while it ran. */
interface Flight {
  ids: Set<string>;
  controller: AbortController;
  /** Left the upstream queue (calling Kentik, or between retries). */
  started?: boolean;
}

interface LastImage {
  digest: string;
  mime: ImageMime;
  size: number;
  fetchedAt: number;
}

/** Everything known about one query hash. */
interface Group {
  ids: Set<string>;
  /** Id of the pending or image entry that expires last, if known (see #longestLived). */
  best?: string;
  flight?: Flight;
  lastImage?: LastImage;
}

interface BlobInfo {
  size: number;
  ids: Set<string>;
  lastServed: number;
}

export type Lookup =
  | { kind: 'image'; entry: ImageEntry; bytes: Buffer }
  | { kind: 'error'; entry: ErrorEntry }
  | { kind: 'pending'; entry: PendingEntry }
  | { kind: 'missing'; reason: 'unknown' | 'expired' | 'lost' };

export interface ImageCacheDeps {
  config: Pick<Config, 'reuseWindow' | 'kentikApiConcurrency' | 'memoryCacheBytes'> &
    Partial<Pick<Config, 'maxPending'>>;
  store: Store;
  client: KentikClient;
  log: FastifyBaseLogger;
  metrics: Metrics;
  now?: () => number;
}

/** Writes to run at once when a shared fetch completes: enough to let the disk batch fsyncs. */
const WRITE_CONCURRENCY = 64;

/**
 * The in-memory index over the store, the request-sharing rules and the background fetches.
 * The store is the truth across restarts; this index is the truth while the process runs.
 */
export class ImageCache {
  readonly entries = new Map<string, Entry>();
  readonly #groups = new Map<string, Group>();
  readonly #blobInfo = new Map<string, BlobInfo>();
  readonly waiters: Waiters;
  readonly blobs: BlobCache;
  readonly #limiter: Limiter;
  readonly #store: Store;
  readonly #client: KentikClient;
  readonly #log: FastifyBaseLogger;
  readonly #metrics: Metrics;
  readonly #reuseWindowMs: number;
  readonly #maxPending: number;
  readonly #concurrency: number;
  readonly #now: () => number;
  readonly #flights = new Set<Promise<void>>();
  /** Digests being written but not yet indexed: not orphans, whatever a directory scan says. */
  readonly #reserved = new Set<string>();
  /** The last write queued per id (see #persist). */
  readonly #writes = new Map<string, Promise<void>>();
  #closing = false;
  /** Entries changed since the last checkpoint. */
  #dirty = true;
  #storedBytes = 0;

  constructor({ config, store, client, log, metrics, now = Date.now }: ImageCacheDeps) {
    this.#store = store;
    this.#client = client;
    this.#log = log;
    this.#metrics = metrics;
    this.#now = now;
    this.#reuseWindowMs = config.reuseWindow * 1000;
    this.#maxPending = config.maxPending ?? Infinity;
    this.#concurrency = config.kentikApiConcurrency;
    this.#limiter = new Limiter(config.kentikApiConcurrency, (n) => metrics.upstreamQueued.set(n));
    this.waiters = new Waiters((n) => metrics.waiters.set(n));
    this.blobs = new BlobCache(store, config.memoryCacheBytes, log, (n) =>
      metrics.memoryBytes.set(n),
    );
  }

  get storedBytes(): number {
    return this.#storedBytes;
  }

  /**
   * Loads the store's entries into the index, drops expired ones and resumes pending fetches in
   * the background. Resolves once the index is usable; fetches go on after.
   */
  async load(): Promise<{ loaded: number; expired: number; quarantined: number; resumed: number }> {
    const { entries, quarantined } = await this.#store.loadEntries();
    for (const q of quarantined) {
      this.#log.warn(
        { file: q.name, reason: q.reason, movedTo: q.movedTo },
        'unreadable cache file quarantined',
      );
      this.#metrics.quarantined.inc();
    }
    const now = this.#now();
    const expired: string[] = [];
    const pendingByHash = new Map<string, PendingEntry[]>();
    for (const entry of entries) {
      if (entry.expiresAt <= now) {
        expired.push(entry.id);
        continue;
      }
      this.#index(entry);
      if (entry.kind === 'pending') {
        const list = pendingByHash.get(entry.hash) ?? [];
        list.push(entry);
        pendingByHash.set(entry.hash, list);
      }
      if (entry.kind === 'image') this.#rememberImage(entry.hash, entry);
    }
    // Deleting is not needed for correctness (they are not indexed), so it does not delay readiness.
    void this.#deleteFromStore(expired);
    for (const list of pendingByHash.values()) {
      const first = list[0]!;
      this.#startFlight(
        first.hash,
        first.query,
        list.map((e) => e.id),
      );
    }
    return {
      loaded: entries.length,
      expired: expired.length,
      quarantined: quarantined.length,
      resumed: pendingByHash.size,
    };
  }

  /** Applies the sharing rules to a POST; persists a new entry before returning its id. */
  async request(
    query: unknown,
    ttlSeconds: number,
  ): Promise<{ id: string; result: RequestResult }> {
    if (this.#closing) {
      throw new AppError(
        503,
        'Service unavailable',
        'The service is restarting; POST again in a few seconds.',
        [],
        { headers: { 'retry-after': '5' } },
      );
    }
    const hash = queryHash(query);
    const now = this.#now();
    let expiresAt = roundExpiry(now, ttlSeconds);
    const group = this.#groups.get(hash);

    // Rule 1: a live pending or image entry that lives at least as long as asked for. The
    // longest-lived one is enough to decide, and it is tracked, so this is O(1) however many
    // ids a popular query has collected.
    const best = group && this.#longestLived(group);
    if (best && best.expiresAt > now && best.expiresAt >= expiresAt) {
      // A concurrent POST may have created it and still be writing it: hand the id out only once
      // it is on disk, or a crash now would lose an id the client already holds.
      const writing = this.#writes.get(best.id);
      if (writing) {
        await writing.catch(() => {});
        // Its save failed and it was withdrawn: decide again (this POST then saves its own).
        if (!this.entries.has(best.id)) return this.request(query, ttlSeconds);
      }
      this.#metrics.requests.inc({ result: 'hit' });
      return { id: best.id, result: 'hit' };
    }

    // An id is unique per query and millisecond; never hand out an id that holds an error.
    while (this.entries.has(formatId(hash, expiresAt))) expiresAt++;
    const id = formatId(hash, expiresAt);
    const base = { id, hash, expiresAt, createdAt: now };

    // Rule 2: share a fetch in flight, or an image fetched within REUSE_WINDOW.
    if (group?.flight) {
      const entry: PendingEntry = { ...base, kind: 'pending', query };
      group.flight.ids.add(id);
      this.#index(entry);
      await this.#persistNew(entry);
      this.#metrics.requests.inc({ result: 'shared' });
      return { id, result: 'shared' };
    }
    const last = group?.lastImage;
    if (last && now - last.fetchedAt <= this.#reuseWindowMs && this.#blobInfo.has(last.digest)) {
      const entry: ImageEntry = { ...base, kind: 'image', ...last };
      this.#index(entry);
      await this.#persistNew(entry);
      this.#metrics.requests.inc({ result: 'shared' });
      return { id, result: 'shared' };
    }

    // Rule 3: a new fetch, unless MAX_PENDING fetches already wait: then refuse it now rather than
    // hand out an id that would wait for hours behind a flood. Hits and shares above still work.
    if (this.#flights.size >= this.#maxPending) {
      // About how long the queue takes to drain, at ~2 s a chart per upstream slot.
      const retryAfter = Math.min(
        300,
        Math.max(5, Math.ceil((2 * this.#flights.size) / this.#concurrency)),
      );
      throw new AppError(
        503,
        'Too busy',
        `${this.#flights.size} fetches are already waiting for Kentik (MAX_PENDING). Images already requested are still served; retry this query after ${retryAfter} s.`,
        ['upstream'],
        { headers: { 'retry-after': String(retryAfter) } },
      );
    }
    // The flight is registered before the first await, so concurrent POSTs of the same query
    // join it instead of starting their own.
    const entry: PendingEntry = { ...base, kind: 'pending', query };
    this.#index(entry);
    this.#startFlight(hash, query, [id]);
    await this.#persistNew(entry);
    this.#metrics.requests.inc({ result: 'miss' });
    return { id, result: 'miss' };
  }

  /** What an id stands for right now; `image` comes with its bytes. */
  async lookup(id: string): Promise<Lookup> {
    const found = await this.#lookup(id);
    this.#metrics.imageLookups.inc({ result: found.kind === 'missing' ? 'not_found' : found.kind });
    return found;
  }

  /**
   * The hot path of GET /image: an image that can be served right now from memory, with the same
   * bookkeeping as lookup(). Undefined whenever lookup() has more to do (unknown, expired, pending,
   * being written, not an image, bytes not in memory): then call lookup().
   */
  lookupHot(id: string): Extract<Lookup, { kind: 'image' }> | undefined {
    const entry = this.entries.get(id);
    if (entry?.kind !== 'image' || this.#writes.has(id)) return undefined;
    const now = this.#now();
    if (entry.expiresAt <= now) return undefined;
    const bytes = this.blobs.peek(entry.digest);
    if (!bytes) return undefined;
    const info = this.#blobInfo.get(entry.digest);
    if (info) info.lastServed = now;
    this.#metrics.imageLookups.inc({ result: 'image' });
    return { kind: 'image', entry, bytes };
  }

  async #lookup(id: string): Promise<Lookup> {
    let entry = this.entries.get(id);
    const writing = entry && entry.kind !== 'pending' ? this.#writes.get(id) : undefined;
    if (writing) {
      // A fetch just finished and its result is still being written: serve only what a restart
      // would serve too (the rule #runFlight follows for waiters).
      await writing;
      entry = this.entries.get(id);
    }
    if (!entry) return { kind: 'missing', reason: 'unknown' };
    if (entry.expiresAt <= this.#now()) return { kind: 'missing', reason: 'expired' };
    if (entry.kind !== 'image') return { kind: entry.kind, entry } as Lookup;
    const info = this.#blobInfo.get(entry.digest);
    if (info) info.lastServed = this.#now();
    const bytes = this.blobs.peek(entry.digest) ?? (await this.blobs.get(entry.digest));
    if (!bytes) {
      this.#log.warn({ id, digest: entry.digest }, 'image bytes missing or damaged; entry dropped');
      await this.#drop([...(info?.ids ?? [id])]);
      return { kind: 'missing', reason: 'lost' };
    }
    return { kind: 'image', entry, bytes };
  }

  /** Waits until `id` is no longer pending, the timeout passes, or `signal` aborts. */
  waitFor(id: string, timeoutMs: number, signal?: AbortSignal): Promise<WaitOutcome> {
    if (this.entries.get(id)?.kind !== 'pending' || this.#closing) return Promise.resolve('ready');
    return this.waiters.wait(id, timeoutMs, signal);
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** Removes entries from index and store; blobs nobody uses any more go at the next maintenance. */
  async #drop(ids: string[]): Promise<void> {
    for (const id of ids) this.#unindex(id);
    await this.#deleteFromStore(ids);
  }

  /** Ids that have expired at `now`, for maintenance. */
  expiredIds(now = this.#now()): string[] {
    const out: string[] = [];
    for (const e of this.entries.values()) if (e.expiresAt <= now) out.push(e.id);
    return out;
  }

  async removeExpired(ids: string[]): Promise<void> {
    this.#metrics.expired.inc(ids.length);
    await this.#drop(ids);
  }

  /** Blobs no live id uses, other than the last image of a query still inside REUSE_WINDOW. */
  unusedBlobs(): string[] {
    const now = this.#now();
    const keep = this.#reusableDigests(now);
    const out: string[] = [];
    for (const [digest, info] of this.#blobInfo)
      if (info.ids.size === 0 && !keep.has(digest)) out.push(digest);
    return out;
  }

  #reusableDigests(now: number): Set<string> {
    const keep = new Set<string>();
    for (const g of this.#groups.values()) {
      if (g.lastImage && now - g.lastImage.fetchedAt <= this.#reuseWindowMs)
        keep.add(g.lastImage.digest);
    }
    return keep;
  }

  /** Forgets queries with no ids, no fetch and no image still inside REUSE_WINDOW. */
  pruneGroups(now = this.#now()): void {
    for (const [hash, g] of this.#groups) {
      if (g.lastImage && now - g.lastImage.fetchedAt > this.#reuseWindowMs) delete g.lastImage;
      if (g.ids.size === 0 && !g.flight && !g.lastImage) this.#groups.delete(hash);
    }
  }

  /** Digests the index knows, for finding orphan blob files left by a crash. */
  isKnownDigest(digest: string): boolean {
    return this.#blobInfo.has(digest) || this.#reserved.has(digest);
  }

  /** Deletes image bytes unless something started using them since the caller looked. */
  async deleteBlob(digest: string): Promise<void> {
    const info = this.#blobInfo.get(digest);
    if (this.#reserved.has(digest) || (info && info.ids.size > 0)) return;
    if (info) this.#storedBytes -= info.size;
    this.#blobInfo.delete(digest);
    for (const g of this.#groups.values()) if (g.lastImage?.digest === digest) delete g.lastImage;
    this.#metrics.bytes.set(this.#storedBytes);
    await this.blobs.delete(digest);
  }

  /** Evicts least recently served images until stored bytes fit `maxBytes`; returns how many. */
  async evictToFit(maxBytes: number): Promise<number> {
    if (this.#storedBytes <= maxBytes) return 0;
    const byAge = [...this.#blobInfo.entries()].sort((a, b) => a[1].lastServed - b[1].lastServed);
    let evicted = 0;
    for (const [digest, info] of byAge) {
      if (this.#storedBytes <= maxBytes) break;
      this.#log.info(
        { digest, bytes: info.size, ids: info.ids.size },
        'evicting image (CACHE_MAX_BYTES)',
      );
      await this.#drop([...info.ids]);
      await this.deleteBlob(digest);
      evicted++;
    }
    this.#metrics.evictions.inc(evicted);
    return evicted;
  }

  /** Updates gauges that are cheaper to count on scrape than on every change. */
  countEntries(): { pending: number; image: number; error: number } {
    const counts = { pending: 0, image: 0, error: 0 };
    const now = this.#now();
    for (const e of this.entries.values()) if (e.expiresAt > now) counts[e.kind]++;
    return counts;
  }

  /**
   * First step of a shutdown, before the server stops taking requests: stops fetches (pending
   * entries stay in the store for the next start) and wakes every waiting GET at once, to be
   * answered 503 + Retry-After instead of holding the shutdown until it times out.
   */
  beginClose(): void {
    if (this.#closing) return;
    this.#closing = true;
    const started = performance.now();
    const waiting = this.waiters.count;
    // Queued fetches are dropped from the queue in one pass; only the few running ones are aborted
    // (an abort event per queued fetch would cost seconds for a queue of 100k).
    const reason = new Error('shutting down');
    let aborted = this.#limiter.rejectAll(reason);
    for (const g of this.#groups.values()) {
      if (!g.flight?.started) continue;
      g.flight.controller.abort(reason);
      aborted++;
    }
    this.waiters.notifyAll();
    this.#log.info(
      { fetches: aborted, waiters: waiting, durationMs: Math.round(performance.now() - started) },
      'shutdown: fetches stopped (they resume at next start), waiting requests answered',
    );
  }

  /** Ends the shutdown: waits for fetches and writes to settle and saves the index snapshot. */
  async close(): Promise<void> {
    this.beginClose();
    await Promise.allSettled([...this.#flights]);
    await Promise.allSettled([...this.#writes.values()]);
    await this.checkpoint();
  }

  /** Lets the store save the index for a fast next start, if anything changed since last time. */
  async checkpoint(): Promise<void> {
    if (!this.#dirty) return;
    this.#dirty = false;
    try {
      await this.#store.checkpoint(this.entries.values());
    } catch (err) {
      this.#dirty = true;
      this.#log.warn(
        { err: (err as Error).message },
        'could not save the index snapshot; the next start reads every entry file',
      );
    }
  }

  /** Whether any id a fetch is for is still indexed and unexpired. */
  #anyLive(flight: Flight): boolean {
    const now = this.#now();
    for (const id of flight.ids) {
      const e = this.entries.get(id);
      if (e && e.expiresAt > now) return true;
    }
    return false;
  }

  /** The pending or image entry of a query that expires last; rescans only after it went away. */
  #longestLived(group: Group): Entry | undefined {
    const current = group.best === undefined ? undefined : this.entries.get(group.best);
    if (current && current.kind !== 'error') return current;
    let best: Entry | undefined;
    for (const id of group.ids) {
      const e = this.entries.get(id);
      if (e && e.kind !== 'error' && (!best || e.expiresAt > best.expiresAt)) best = e;
    }
    group.best = best?.id;
    return best;
  }

  #index(entry: Entry): void {
    this.#dirty = true;
    const previous = this.entries.get(entry.id);
    if (previous) this.#unindexBlob(previous);
    this.entries.set(entry.id, entry);
    let group = this.#groups.get(entry.hash);
    if (!group) this.#groups.set(entry.hash, (group = { ids: new Set() }));
    group.ids.add(entry.id);
    if (entry.kind !== 'error' && group.best !== undefined) {
      const best = this.entries.get(group.best);
      if (!best || best.kind === 'error' || entry.expiresAt > best.expiresAt) group.best = entry.id;
    }
    if (entry.kind === 'image') {
      let info = this.#blobInfo.get(entry.digest);
      if (!info) {
        info = { size: entry.size, ids: new Set(), lastServed: entry.fetchedAt };
        this.#blobInfo.set(entry.digest, info);
        this.#storedBytes += entry.size;
        this.#metrics.bytes.set(this.#storedBytes);
      }
      info.ids.add(entry.id);
    }
  }

  #unindex(id: string): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    this.#dirty = true;
    this.entries.delete(id);
    this.#unindexBlob(entry);
    const group = this.#groups.get(entry.hash);
    if (!group) return;
    group.ids.delete(id);
    group.flight?.ids.delete(id);
    if (group.ids.size === 0 && !group.flight && !group.lastImage) this.#groups.delete(entry.hash);
  }

  #unindexBlob(entry: Entry): void {
    if (entry.kind === 'image') this.#blobInfo.get(entry.digest)?.ids.delete(entry.id);
  }

  #rememberImage(hash: string, img: LastImage): void {
    const group = this.#groups.get(hash);
    if (group && (!group.lastImage || group.lastImage.fetchedAt < img.fetchedAt)) {
      group.lastImage = {
        digest: img.digest,
        mime: img.mime,
        size: img.size,
        fetchedAt: img.fetchedAt,
      };
    }
  }

  /**
   * Persists the entry of a new id before the id is handed out. If it cannot be saved the id is
   * withdrawn and the POST fails (507 disk full, else 503 naming the cause): an id that a restart
   * would forget must never reach a client.
   */
  async #persistNew(entry: Entry): Promise<void> {
    try {
      await this.#persist(entry);
    } catch (err) {
      if (this.entries.get(entry.id) === entry) this.#unindex(entry.id);
      const code = err instanceof StoreWriteError ? err.code : undefined;
      if (code === 'ENOSPC')
        throw new StorageError(
          'The request could not be saved: the cache disk is full (ENOSPC). Free space or lower CACHE_MAX_BYTES, then POST again.',
          { cause: err },
        );
      throw new AppError(
        503,
        'Storage unavailable',
        `The request could not be saved (${code ?? (err as Error).message}), so no id was issued. Check that CACHE_PATH and its folders are writable (GET /readyz says what is wrong), then POST again.`,
        ['storage'],
        { cause: err, headers: { 'retry-after': '10' } },
      );
    }
  }

  /**
   * Persists an entry; rejects if it could not be written (logged and counted here). The results
   * of a fetch that cannot be saved still work from memory; they just would not survive a restart.
   */
  #persist(entry: Entry): Promise<void> {
    // Writes of one id are chained, so a slow "pending" write can never land after (and undo)
    // the "image" write of a fetch that finished meanwhile.
    const previous = this.#writes.get(entry.id) ?? Promise.resolve();
    const write = previous.then(
      () => this.#write(entry),
      () => this.#write(entry),
    );
    this.#writes.set(entry.id, write);
    void write
      .catch(() => {})
      .finally(() => {
        if (this.#writes.get(entry.id) === write) this.#writes.delete(entry.id);
      });
    return write;
  }

  async #write(entry: Entry): Promise<void> {
    try {
      await this.#store.putEntry(entry);
    } catch (err) {
      const code = err instanceof StoreWriteError ? err.code : undefined;
      this.#metrics.storeErrors.inc({ code: code ?? 'unknown' });
      this.#log.error({ id: entry.id, err: (err as Error).message }, 'could not persist entry');
      throw err;
    }
  }

  async #deleteFromStore(ids: string[]): Promise<void> {
    await forEachLimited(ids, WRITE_CONCURRENCY, async (id) => {
      try {
        await this.#store.deleteEntry(id);
      } catch (err) {
        this.#log.warn({ id, err: (err as Error).message }, 'could not delete entry from store');
      }
    });
  }

  #startFlight(hash: string, query: unknown, ids: string[]): void {
    let group = this.#groups.get(hash);
    if (!group) this.#groups.set(hash, (group = { ids: new Set(ids) }));
    const flight: Flight = { ids: new Set(ids), controller: new AbortController() };
    group.flight = flight;
    const run = this.#runFlight(hash, query, flight).finally(() => this.#flights.delete(run));
    this.#flights.add(run);
  }

  async #runFlight(hash: string, query: unknown, flight: Flight): Promise<void> {
    const signal = flight.controller.signal;
    const firstId = [...flight.ids][0] ?? hash;
    let outcome: { image: LastImage } | { error: AppError };
    try {
      const image = await this.#limiter.run(
        // Decided when the fetch leaves the queue, not when it joined: if every id it was for has
        // expired or been evicted meanwhile, nobody can ever see the answer, so Kentik is not asked.
        async () => {
          if (!this.#anyLive(flight)) return null;
          flight.started = true;
          return this.#client.fetchChart(query, { id: firstId, signal });
        },
        signal,
      );
      if (image === null) {
        const group = this.#groups.get(hash);
        if (group?.flight === flight) delete group.flight;
        this.#metrics.upstreamFetches.inc({ outcome: 'dropped' });
        this.#log.info({ hash, ids: flight.ids.size }, 'queued fetch dropped: all its ids expired');
        return;
      }
      const digest = bytesDigest(image.bytes);
      this.#reserved.add(digest);
      try {
        await this.blobs.put(digest, image.bytes);
        outcome = {
          image: { digest, mime: image.mime, size: image.bytes.length, fetchedAt: this.#now() },
        };
      } catch (err) {
        this.#reserved.delete(digest);
        const code = err instanceof StoreWriteError ? err.code : undefined;
        this.#metrics.storeErrors.inc({ code: code ?? 'unknown' });
        this.#log.error({ id: firstId, err: (err as Error).message }, 'could not store image');
        outcome = {
          error: new StorageError(
            code === 'ENOSPC'
              ? 'The image was fetched but could not be stored: the cache disk is full (ENOSPC). Free space or raise CACHE_MAX_BYTES headroom, then POST the query again.'
              : `The image was fetched but could not be stored (${code ?? (err as Error).message}). Check the cache directory, then POST the query again.`,
            { cause: err },
          ),
        };
      }
    } catch (err) {
      // Shutdown: entries stay pending on disk and resume at next start.
      if (signal.aborted || this.#closing) return;
      outcome = {
        error:
          err instanceof AppError
            ? err
            : new AppError(
                500,
                'Internal error',
                `Fetching the image failed unexpectedly: ${(err as Error).message}`,
              ),
      };
      if (!(err instanceof AppError)) this.#log.error({ err }, 'unexpected fetch failure');
    }

    const group = this.#groups.get(hash);
    if (group?.flight === flight) delete group.flight;
    const done: Entry[] = [];
    for (const id of flight.ids) {
      const pending = this.entries.get(id);
      if (pending?.kind !== 'pending') continue;
      const base = { id, hash, expiresAt: pending.expiresAt, createdAt: pending.createdAt };
      const entry: Entry =
        'image' in outcome
          ? { ...base, kind: 'image', ...outcome.image }
          : {
              ...base,
              kind: 'error',
              status: outcome.error.statusCode,
              errorType: outcome.error.type,
              message: outcome.error.message,
            };
      this.#index(entry);
      done.push(entry);
    }
    if ('image' in outcome) {
      if (group) this.#rememberImage(hash, outcome.image);
      this.#reserved.delete(outcome.image.digest);
    }
    // Persist before waking waiters: an id is never served something a restart would not repeat.
    await forEachLimited(done, WRITE_CONCURRENCY, (e) => this.#persist(e).catch(() => {}));
    for (const e of done) this.waiters.notify(e.id);
    this.#log.debug(
      { hash, ids: done.length, outcome: 'image' in outcome ? 'image' : outcome.error.type },
      'fetch settled',
    );
  }
}

/**
 * The expiry of a new id, rounded up to a step of at most 1/64 of its ttl (a power of two seconds,
 * at least 1 s). Rule 1 then answers re-POSTs of a query with a slowly growing expiry (the same ttl
 * a moment later) with the same id, instead of a new entry every millisecond: one query has at most
 * ~128 live ids per power-of-two band of ttl (~2,000 at MAX_TTL 30 days), however it is POSTed.
 */
export function roundExpiry(now: number, ttlSeconds: number): number {
  const stepMs = 1000 * 2 ** Math.max(0, Math.floor(Math.log2(ttlSeconds / 64)));
  return Math.ceil((now + ttlSeconds * 1000) / stepMs) * stepMs;
}

async function forEachLimited<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
