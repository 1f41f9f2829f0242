import { randomBytes } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { FastifyBaseLogger } from 'fastify';
import { addId, eachId, idArray, idCount, removeId, type Ids } from './id-set.ts';
import { Limiter } from './limiter.ts';
import type { Entry, ImageEntry, PendingEntry, QueryJson } from '../domain/entry.ts';
import { formatId } from '../domain/ids.ts';
import { sameSummary, summarizeQuery, type QuerySummary } from '../domain/query-summary.ts';
import { AppError, StorageError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import { StoreWriteError, type Store } from '../store/store.ts';
import {
  PendingCapError,
  matchesKind,
  PAGE_MAX_LIMIT,
  type Coordinator,
  type CoordinatorEvent,
  type Counts,
  type DecideInput,
  type Decision,
  type Lease,
  type MaintenanceReport,
  type OpenReport,
  type Outcome,
  type Page,
  type PageRequest,
  type SettleResult,
  type Slot,
} from './coordinator.ts';

/** The flight of one query: the ids waiting on it and who holds it. */
interface Flight {
  token: string;
  leaseUntil: number;
  query: QueryJson;
  ids: Set<string>;
}

interface LastImage {
  digest: string;
  mime: ImageEntry['mime'];
  size: number;
  fetchedAt: number;
}

/** Everything known about one query hash. */
interface Group {
  /** The hash itself: the one string every entry of the query points to. */
  hash: string;
  ids: Ids;
  /** The query in words, one object shared by every entry of the query (see #share). */
  summary?: QuerySummary;
  /** Id of the pending or image entry that expires last, if known (see #longestLived). */
  best?: string;
  flight?: Flight;
  lastImage?: LastImage;
}

interface BlobInfo {
  /** The digest, one string shared by every image entry of these bytes. */
  digest: string;
  size: number;
  ids: Ids;
  lastServed: number;
}

export interface LocalCoordinatorDeps {
  config: {
    reuseWindow: number;
    kentikApiConcurrency: number;
    cacheMaxBytes?: number | undefined;
    /** Seconds. */
    flightLease: number;
  };
  store: Store;
  log: FastifyBaseLogger;
  metrics: Metrics;
}

/** Ids handled per slice of a long loop; between slices the event loop serves requests. */
const SLICE = 500;
/** Entries counted (or scanned by maintenance) per slice. */
const COUNT_SLICE = 5_000;
/** Entries a page may look at (skipping expired or other kinds) before it returns what it has. */
const PAGE_SCAN = 20_000;
/** Orphan blob files are looked for on the first pass and then every this many passes. */
const ORPHAN_SCAN_EVERY = 10;

/**
 * The in-process coordinator: the index in memory over the filesystem store. The store is the
 * truth across restarts; these maps are the truth while the process runs. Pending entries found
 * at open are flights whose lease has run out, so resuming after a restart is the same takeover
 * a Redis cluster does for a dead replica.
 */
export class LocalCoordinator implements Coordinator {
  readonly backend = 'filesystem' as const;
  readonly shared = false;
  readonly #entries = new Map<string, Entry>();
  readonly #groups = new Map<string, Group>();
  readonly #blobInfo = new Map<string, BlobInfo>();
  /** Digests being written but not yet indexed: not orphans, whatever a directory scan says. */
  readonly #reserved = new Set<string>();
  /** The last write per id not yet durable (see #persist). */
  readonly #writes = new Map<string, Promise<void>>();
  /** Puts and deletes of one blob, in order (see #serializeBlob). */
  readonly #blobOps = new Map<string, Promise<void>>();
  /**
   * Ids in creation order, and beside them their sequence numbers (the cursors of pages), for
   * newest-first pages. Two flat arrays rather than an object per id: with a million entries that
   * is tens of megabytes. A deleted id keeps its place until #compactOrder; readers skip it as it
   * is not in #entries. An id therefore has one place at most only if a deleted one is never
   * created again while its place is there: decide skips the ids in #gone (deleted since the last
   * compaction) and #goneBefore (deleted before the compaction under way). That costs a Set of
   * the ids deleted lately instead of a Map of every id to its sequence number.
   */
  #order: string[] = [];
  #orderSeq: number[] = [];
  #gone = new Set<string>();
  #goneBefore: Set<string> | undefined;
  #seq = 0;
  readonly #listeners: Array<(e: CoordinatorEvent) => void> = [];
  readonly #limiter: Limiter;
  readonly #store: Store;
  readonly #log: FastifyBaseLogger;
  readonly #metrics: Metrics;
  readonly #reuseWindowMs: number;
  readonly #leaseMs: number;
  readonly #cacheMaxBytes: number | undefined;
  #holdUntil = 0;
  /** Flights (queued, running or orphaned) in #groups, for MAX_PENDING. */
  #flightCount = 0;
  /** Live entries by kind, counted as they are indexed and removed. */
  readonly #tally = { pending: 0, image: 0, error: 0 };
  /** No indexed entry expires before this (a lower bound). */
  #earliestExpiry = Infinity;
  /**
   * The last full count (see counts()): how many indexed entries had expired at `asOf`, kept exact
   * as entries come and go, and valid until `until`, when the next live one expires.
   */
  #expiredCount = { asOf: -Infinity, until: -Infinity, pending: 0, image: 0, error: 0 };
  #minSinceScan = Infinity;
  #dirty = true;
  #checkpointing: Promise<void> | undefined;
  /** Bumped by every #index and #unindex (see counts()). */
  #changes = 0;
  #storedBytes = 0;
  #passes = 0;

  constructor({ config, store, log, metrics }: LocalCoordinatorDeps) {
    this.#store = store;
    this.#log = log;
    this.#metrics = metrics;
    this.#reuseWindowMs = config.reuseWindow * 1000;
    this.#leaseMs = config.flightLease * 1000;
    this.#cacheMaxBytes = config.cacheMaxBytes;
    // kic_upstream_queued is the orchestrator's to report: it holds the queue (see LeaseQueue).
    this.#limiter = new Limiter(config.kentikApiConcurrency);
  }

  async open(): Promise<OpenReport> {
    await this.#store.open();
    const now = Date.now();
    // Expired ids come back as ids only: no entry is made of them just to be dropped.
    const loadResult = await this.#store.loadEntries({ expiredBefore: now });
    const { entries, quarantined } = loadResult;
    for (const q of quarantined) {
      this.#log.warn(
        { file: q.name, reason: q.reason, movedTo: q.movedTo },
        'unreadable cache file quarantined',
      );
      this.#metrics.quarantined.inc();
    }
    // The store forgets the ids it reported expired by itself; a store that ignores expiredBefore
    // returns them as entries, and those are deleted here.
    const expired: string[] = [];
    const live: Entry[] = [];
    let loaded = loadResult.expired?.length ?? 0;
    for (const entry of entries) {
      loaded++;
      if (entry.expiresAt <= now) expired.push(entry.id);
      else live.push(entry);
    }
    // Creation order for pages; one linear pass (TimSort) when the store kept that order.
    live.sort((a, b) => a.createdAt - b.createdAt);
    for (const entry of live) {
      this.#index(entry);
      if (entry.kind === 'pending') {
        // A flight nobody holds: its lease ran out when the previous process stopped.
        const group = this.#groups.get(entry.hash)!;
        if (!group.flight) {
          group.flight = { token: '', leaseUntil: 0, query: entry.query, ids: new Set() };
          this.#flightCount++;
        }
        // One query text per flight (some 3 KB), and one record of it per store file.
        entry.query = group.flight.query;
        group.flight.ids.add(entry.id);
      }
      if (entry.kind === 'image') this.#rememberImage(entry.hash, entry);
    }
    // Deleting is not needed for correctness (they are not indexed), so it does not delay readiness.
    void this.#deleteFromStore(expired);
    return {
      loaded,
      expired: expired.length + (loadResult.expired?.length ?? 0),
      quarantined: quarantined.length,
    };
  }

  async decide(input: DecideInput): Promise<Decision> {
    const { hash, query, queryJson, now, maxPending } = input;
    let { expiresAt } = input;
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
        if (!this.#entries.has(best.id)) return this.decide(input);
      }
      return { result: 'hit', id: best.id };
    }

    // An id is unique per query and millisecond; never hand out an id that holds an error.
    while (this.#taken(formatId(hash, expiresAt))) expiresAt++;
    const id = formatId(hash, expiresAt);
    // The query in words travels with every entry of it (image and error entries keep no query);
    // the same hash is the same query, so a known query's summary is shared, not made again.
    const summary = group?.summary ?? summarizeQuery(query);
    const base = { id, hash, expiresAt, createdAt: now, summary };

    // Rule 2: share a fetch in flight, or an image fetched within REUSE_WINDOW.
    if (group?.flight) {
      // The flight's text: one string however many ids join it.
      const entry: PendingEntry = { ...base, kind: 'pending', query: group.flight.query };
      group.flight.ids.add(id);
      this.#index(entry);
      await this.#persistNew(entry);
      return { result: 'shared', id, entry };
    }
    const last = group?.lastImage;
    if (last && now - last.fetchedAt <= this.#reuseWindowMs && this.#blobInfo.has(last.digest)) {
      const entry: ImageEntry = { ...base, kind: 'image', ...last };
      this.#index(entry);
      await this.#persistNew(entry);
      return { result: 'shared', id, entry };
    }

    // Rule 3: a new flight, unless MAX_PENDING flights already wait (then nothing is stored).
    if (maxPending !== undefined && this.#flightCount >= maxPending)
      throw new PendingCapError(this.#flightCount);
    // The flight is registered before the first await, so concurrent POSTs of the same query join
    // it instead of starting their own.
    const entry: PendingEntry = { ...base, kind: 'pending', query: queryJson };
    this.#index(entry);
    const flight: Flight = {
      token: newToken(),
      leaseUntil: now + this.#leaseMs,
      query: queryJson,
      ids: new Set([id]),
    };
    this.#groups.get(hash)!.flight = flight;
    this.#flightCount++;
    const lease: Lease = { hash, token: flight.token, query: queryJson, id };
    // The fetch starts now and the fsync runs beside it: the record is durable long before Kentik
    // answers, and a settle is written after it in the same journal, so nothing can be served
    // that a restart would not know. Only the id waits for the write.
    input.onFlight?.(lease);
    try {
      await this.#persistNew(entry);
    } catch (err) {
      // Withdrawn. POSTs that joined meanwhile keep the flight: nobody holds it now, so it is
      // handed to claimOrphans at once; with nobody waiting it simply ends.
      const group = this.#groups.get(hash);
      if (group?.flight === flight) {
        if (flight.ids.size === 0) this.#endFlight(hash);
        else {
          flight.leaseUntil = 0;
          this.#emit({ type: 'orphaned', hash });
        }
      }
      throw err;
    }
    return { result: 'miss', id, entry, lease };
  }

  async getEntry(id: string): Promise<Entry | undefined> {
    const entry = this.#entries.get(id);
    const writing = entry && entry.kind !== 'pending' ? this.#writes.get(id) : undefined;
    if (!writing) return entry;
    // A fetch just finished and its result is still being written: serve only what a restart
    // would serve too.
    await writing.catch(() => {});
    return this.#entries.get(id);
  }

  getEntries(ids: string[]): Promise<Array<Entry | undefined>> {
    return Promise.all(ids.map((id) => this.getEntry(id)));
  }

  async renewLease(lease: Lease, now: number): Promise<boolean> {
    const flight = this.#groups.get(lease.hash)?.flight;
    if (flight?.token !== lease.token) return false;
    flight.leaseUntil = now + this.#leaseMs;
    return true;
  }

  async claimOrphans(now: number): Promise<Lease[]> {
    const out: Lease[] = [];
    for (const [hash, group] of this.#groups) {
      const flight = group.flight;
      if (!flight || flight.leaseUntil > now) continue;
      if (flight.ids.size === 0) {
        this.#endFlight(hash);
        continue;
      }
      flight.token = newToken();
      flight.leaseUntil = now + this.#leaseMs;
      out.push({ hash, token: flight.token, query: flight.query, id: [...flight.ids][0]! });
    }
    return out;
  }

  async dropUnwanted(lease: Lease, now: number): Promise<boolean> {
    const flight = this.#groups.get(lease.hash)?.flight;
    if (flight?.token !== lease.token) return false;
    for (const id of flight.ids) {
      const e = this.#entries.get(id);
      if (e?.kind === 'pending' && e.expiresAt > now) return false;
    }
    this.#endFlight(lease.hash);
    return true;
  }

  #endFlight(hash: string): void {
    const group = this.#groups.get(hash);
    if (!group?.flight) return;
    group.flight = undefined;
    this.#flightCount--;
  }

  rejectQueued(reason: unknown): number {
    return this.#limiter.rejectAll(reason);
  }

  async releaseLease(lease: Lease): Promise<void> {
    const flight = this.#groups.get(lease.hash)?.flight;
    if (flight?.token === lease.token) flight.leaseUntil = 0;
  }

  async settle(lease: Lease, outcome: Outcome, now: number): Promise<SettleResult> {
    const { hash } = lease;
    const group = this.#groups.get(hash);
    const flight = group?.flight;
    if (!group || flight?.token !== lease.token) {
      if (outcome.kind === 'image') this.#reserved.delete(outcome.digest);
      return { accepted: false };
    }
    this.#endFlight(hash);
    const done: Entry[] = [];
    for (const id of flight.ids) {
      const pending = this.#entries.get(id);
      if (pending?.kind !== 'pending') continue;
      const base = {
        id,
        hash,
        expiresAt: pending.expiresAt,
        createdAt: pending.createdAt,
        summary: pending.summary,
      };
      let entry: Entry;
      if (outcome.kind === 'image') {
        const { digest, mime, size, fetchedAt } = outcome;
        entry = { ...base, kind: 'image', digest, mime, size, fetchedAt };
      } else {
        const { status, errorType, message } = outcome;
        entry = { ...base, kind: 'error', status, errorType, message };
      }
      this.#index(entry);
      done.push(entry);
    }
    if (outcome.kind === 'image') {
      const { digest, mime, size, fetchedAt } = outcome;
      this.#rememberImage(hash, { digest, mime, size, fetchedAt });
      this.#reserved.delete(digest);
    }
    void now;
    // Persist before anyone is woken: an id is never served something a restart would not repeat.
    // A result that cannot be saved still works from memory (logged and counted in #write). All
    // written in this turn: the store commits them with one fsync.
    await Promise.all(done.map((e) => this.#persist(e).catch(() => {})));
    const ids = done.map((e) => e.id);
    this.#emit({ type: 'settled', hash, ids });
    return { accepted: true, ids };
  }

  async putBlob(digest: string, bytes: Buffer, _keepUntil: number): Promise<void> {
    this.#reserved.add(digest);
    try {
      await this.#serializeBlob(digest, () => this.#store.putBlob(digest, bytes));
    } catch (err) {
      this.#reserved.delete(digest);
      throw err;
    }
  }

  noteServed(digest: string, now: number): void {
    const info = this.#blobInfo.get(digest);
    if (info) info.lastServed = now;
  }

  getBlob(digest: string): Promise<Buffer | undefined> {
    return this.#store.getBlob(digest);
  }

  async dropBlob(digest: string, reason: 'lost' | 'damaged', id?: string): Promise<void> {
    if (reason === 'damaged')
      await this.#store.quarantineBlob(digest, 'content does not match digest').catch(() => {});
    const ids = idArray(this.#blobInfo.get(digest)?.ids);
    if (id && !ids.includes(id)) ids.push(id);
    await this.#drop(ids);
    this.#emit({ type: 'deleted', ids, digests: [digest] });
  }

  async acquireSlot(signal?: AbortSignal): Promise<Slot> {
    const release = await this.#limiter.acquire(signal);
    return { renew: async () => {}, release: async () => release() };
  }

  async holdUpstream(untilMs: number): Promise<void> {
    this.#holdUntil = Math.max(this.#holdUntil, untilMs);
  }

  async upstreamHeldUntil(): Promise<number> {
    return this.#holdUntil;
  }

  async sharing(hashes: string[], now: number): Promise<number[]> {
    return hashes.map((hash) => {
      let n = 0;
      for (const id of eachId(this.#groups.get(hash)?.ids)) {
        const e = this.#entries.get(id);
        if (e && e.kind !== 'error' && e.expiresAt > now) n++;
      }
      return n;
    });
  }

  async counts(now: number): Promise<Counts> {
    // Until the first indexed entry expires, the running tallies are exact: O(1), so /readyz and
    // a scrape cost nothing however large the cache. After that, count (until maintenance).
    if (now < this.#earliestExpiry) return { ...this.#tally, storedBytes: this.#storedBytes };
    // After that, the last full count stays exact until the next live entry expires (#index and
    // #unindex keep it so): /info and every scrape do not walk a million entries each.
    const x = this.#expiredCount;
    if (now >= x.asOf && now < x.until) {
      const t = this.#tally;
      return {
        pending: t.pending - x.pending,
        image: t.image - x.image,
        error: t.error - x.error,
        storedBytes: this.#storedBytes,
      };
    }
    const counts = { pending: 0, image: 0, error: 0, storedBytes: this.#storedBytes };
    const expired = { asOf: now, until: Infinity, pending: 0, image: 0, error: 0 };
    const changes = this.#changes;
    let n = 0;
    for (const e of this.#entries.values()) {
      if (e.expiresAt > now) {
        counts[e.kind]++;
        if (e.expiresAt < expired.until) expired.until = e.expiresAt;
      } else expired[e.kind]++;
      // A million entries take tens of milliseconds: let requests in between slices. Entries
      // added or removed meanwhile are counted or not, as with any snapshot of a live cache.
      if (++n % COUNT_SLICE === 0) await yieldToLoop();
    }
    // Kept only if nothing changed during the walk; otherwise the next call counts again.
    if (changes === this.#changes) this.#expiredCount = expired;
    return counts;
  }

  async page({ cursor, limit, kind }: PageRequest, now: number): Promise<Page> {
    limit = Math.max(0, Math.min(PAGE_MAX_LIMIT, Math.floor(limit)));
    const order = this.#order;
    // Newest first: start just below the cursor's sequence number (binary search; seq grows).
    let i = order.length - 1;
    if (cursor !== undefined) {
      const seq = Number(cursor);
      let lo = 0;
      let hi = order.length; // first index with seq >= cursor
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.#orderSeq[mid]! < seq) lo = mid + 1;
        else hi = mid;
      }
      i = lo - 1;
    }
    const entries: Entry[] = [];
    let scanned = 0;
    for (; i >= 0 && entries.length < limit && scanned < PAGE_SCAN; i--, scanned++) {
      const id = order[i]!;
      const e = this.#entries.get(id); // undefined: deleted since
      if (e && e.expiresAt > now && matchesKind(kind, e)) entries.push(e);
    }
    return i >= 0 ? { entries, next: String(this.#orderSeq[i + 1]!) } : { entries };
  }

  onEvent(listener: (event: CoordinatorEvent) => void): void {
    this.#listeners.push(listener);
  }

  async maintain(now: number): Promise<MaintenanceReport> {
    const expiredIds: string[] = [];
    let earliest = Infinity;
    let n = 0;
    for (const e of this.#entries.values()) {
      if (e.expiresAt <= now) expiredIds.push(e.id);
      else if (e.expiresAt < earliest) earliest = e.expiresAt;
      // With a million entries one walk is tens of milliseconds: requests go in between slices.
      // Entries indexed meanwhile lower #minSinceScan, which bounds #earliestExpiry below.
      if (++n % COUNT_SLICE === 0) await yieldToLoop();
    }
    for (let i = 0; i < expiredIds.length; i += SLICE) {
      const slice = expiredIds.slice(i, i + SLICE);
      this.#metrics.expired.inc(slice.length);
      await this.#drop(slice);
      await yieldToLoop();
    }
    await this.#pruneGroups(now);
    // Entries indexed during the slices above lowered it already; never raise it past them.
    this.#earliestExpiry = Math.max(this.#earliestExpiry, Math.min(earliest, this.#minSinceScan));
    this.#minSinceScan = Infinity;

    let evicted = 0;
    if (this.#cacheMaxBytes !== undefined) evicted = await this.#evictToFit(this.#cacheMaxBytes);

    let blobsDeleted = 0;
    for (const digest of await this.#unusedBlobs(now)) {
      await this.#deleteBlob(digest);
      blobsDeleted++;
    }

    let orphansDeleted = 0;
    if (this.#passes % ORPHAN_SCAN_EVERY === 0) {
      const onDisk = await this.#store.listBlobs();
      for (let i = 0; i < onDisk.length; i++) {
        const digest = onDisk[i]!;
        if (!this.#blobInfo.has(digest) && !this.#reserved.has(digest)) {
          await this.#serializeBlob(digest, async () => {
            // Checked again inside the queue: a fetch may have just produced these bytes.
            if (!this.#blobInfo.has(digest) && !this.#reserved.has(digest))
              await this.#store.deleteBlob(digest);
          });
          orphansDeleted++;
        }
        if (i % SLICE === SLICE - 1) await yieldToLoop();
      }
    }
    this.#passes++;
    await this.#compactOrder();

    await this.checkpoint();
    const tempFilesDeleted = await this.#store.sweepTemporary();
    return { expired: expiredIds.length, blobsDeleted, orphansDeleted, tempFilesDeleted, evicted };
  }

  async checkReady(): Promise<void> {
    await this.#store.checkWritable();
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#writes.values()]);
    await this.checkpoint();
    await this.#store.close();
  }

  /**
   * Lets the store save the index for a fast next start, if anything changed since last time.
   * One at a time: a call while one runs waits for it, then runs if still needed.
   */
  checkpoint(): Promise<void> {
    const run = async (): Promise<void> => {
      if (!this.#dirty) return;
      this.#dirty = false;
      try {
        await this.#store.checkpoint(this.#entries.values());
      } catch (err) {
        this.#dirty = true;
        this.#log.warn(
          { err: (err as Error).message },
          'could not save the index snapshot; the next start replays the whole journal',
        );
      }
    };
    const next = (this.#checkpointing ?? Promise.resolve()).then(run);
    this.#checkpointing = next;
    void next.finally(() => {
      if (this.#checkpointing === next) this.#checkpointing = undefined;
    });
    return next;
  }

  #emit(event: CoordinatorEvent): void {
    for (const l of this.#listeners) l(event);
  }

  /** Removes entries from index and store; blobs nobody uses any more go at the next maintenance. */
  async #drop(ids: string[]): Promise<void> {
    for (const id of ids) this.#unindex(id);
    await this.#deleteFromStore(ids);
  }

  /** Blobs no live id uses, other than the last image of a query still inside REUSE_WINDOW. */
  async #unusedBlobs(now: number): Promise<string[]> {
    const keep = new Set<string>();
    let n = 0;
    for (const g of this.#groups.values()) {
      if (g.lastImage && now - g.lastImage.fetchedAt <= this.#reuseWindowMs)
        keep.add(g.lastImage.digest);
      if (++n % COUNT_SLICE === 0) await yieldToLoop();
    }
    const out: string[] = [];
    for (const [digest, info] of this.#blobInfo)
      if (info.ids === undefined && !keep.has(digest)) out.push(digest);
    return out;
  }

  /** Forgets queries with no ids, no fetch and no image still inside REUSE_WINDOW. */
  async #pruneGroups(now: number): Promise<void> {
    let n = 0;
    for (const [hash, g] of this.#groups) {
      if (g.lastImage && now - g.lastImage.fetchedAt > this.#reuseWindowMs) g.lastImage = undefined;
      if (g.ids === undefined && !g.flight && !g.lastImage) this.#groups.delete(hash);
      if (++n % COUNT_SLICE === 0) await yieldToLoop();
    }
  }

  /** Deletes image bytes unless something started using them since the caller looked. */
  async #deleteBlob(digest: string): Promise<void> {
    const info = this.#blobInfo.get(digest);
    if (this.#reserved.has(digest) || (info && info.ids !== undefined)) return;
    if (info) this.#storedBytes -= info.size;
    this.#blobInfo.delete(digest);
    for (const g of this.#groups.values())
      if (g.lastImage?.digest === digest) g.lastImage = undefined;
    this.#metrics.bytes.set(this.#storedBytes);
    this.#emit({ type: 'deleted', ids: [], digests: [digest] });
    await this.#serializeBlob(digest, () => this.#store.deleteBlob(digest));
  }

  /** Evicts least recently served images until stored bytes fit `maxBytes`; returns how many. */
  async #evictToFit(maxBytes: number): Promise<number> {
    if (this.#storedBytes <= maxBytes) return 0;
    const byAge = [...this.#blobInfo.entries()].sort((a, b) => a[1].lastServed - b[1].lastServed);
    let evicted = 0;
    for (const [digest, info] of byAge) {
      if (this.#storedBytes <= maxBytes) break;
      this.#log.info(
        { digest, bytes: info.size, ids: idCount(info.ids) },
        'evicting image (CACHE_MAX_BYTES)',
      );
      const ids = idArray(info.ids);
      await this.#drop(ids);
      this.#emit({ type: 'deleted', ids, digests: [digest] });
      await this.#deleteBlob(digest);
      evicted++;
    }
    this.#metrics.evictions.inc(evicted);
    return evicted;
  }

  /**
   * Puts and deletes of one digest run in order. Otherwise a fetch that produced the very bytes
   * maintenance is deleting could see the old file, skip its write, and lose the file to the rm.
   */
  #serializeBlob(digest: string, op: () => Promise<void>): Promise<void> {
    const run = (this.#blobOps.get(digest) ?? Promise.resolve()).then(op, op);
    this.#blobOps.set(digest, run);
    const done = (): void => {
      if (this.#blobOps.get(digest) === run) this.#blobOps.delete(digest);
    };
    void run.then(done, done);
    return run;
  }

  /** An id that exists, or still has its place in the creation order (see #order). */
  #taken(id: string): boolean {
    return this.#entries.has(id) || this.#gone.has(id) || this.#goneBefore?.has(id) === true;
  }

  /** The pending or image entry of a query that expires last; rescans only after it went away. */
  #longestLived(group: Group): Entry | undefined {
    const current = group.best === undefined ? undefined : this.#entries.get(group.best);
    if (current && current.kind !== 'error') return current;
    let best: Entry | undefined;
    for (const id of eachId(group.ids)) {
      const e = this.#entries.get(id);
      if (e && e.kind !== 'error' && (!best || e.expiresAt > best.expiresAt)) best = e;
    }
    group.best = best?.id;
    return best;
  }

  #index(entry: Entry): void {
    this.#dirty = true;
    this.#changes++;
    const previous = this.#entries.get(entry.id);
    if (previous) this.#unindexBlob(previous);
    else {
      const seq = ++this.#seq;
      this.#order.push(entry.id);
      this.#orderSeq.push(seq);
    }
    this.#entries.set(entry.id, entry);
    if (previous) {
      this.#tally[previous.kind]--;
      this.#countExpired(previous, -1);
    }
    this.#tally[entry.kind]++;
    this.#countExpired(entry, 1);
    if (entry.expiresAt < this.#earliestExpiry) this.#earliestExpiry = entry.expiresAt;
    if (entry.expiresAt < this.#minSinceScan) this.#minSinceScan = entry.expiresAt;
    let group = this.#groups.get(entry.hash);
    if (!group) {
      // Every field from the start, and never `delete`d: one shape for every group, its fields in
      // the object. Deleting one turns the object into a dictionary (a pass that let 100k images
      // leave REUSE_WINDOW made 100k of them at once).
      group = {
        hash: entry.hash,
        ids: undefined,
        summary: undefined,
        best: undefined,
        flight: undefined,
        lastImage: undefined,
      };
      this.#groups.set(entry.hash, group);
    }
    this.#share(entry, group);
    group.ids = addId(group.ids, entry.id);
    if (entry.kind !== 'error' && group.best !== undefined) {
      const best = this.#entries.get(group.best);
      if (!best || best.kind === 'error' || entry.expiresAt > best.expiresAt) group.best = entry.id;
    }
    if (entry.kind === 'image') {
      let info = this.#blobInfo.get(entry.digest);
      if (!info) {
        info = {
          digest: entry.digest,
          size: entry.size,
          ids: undefined,
          lastServed: entry.fetchedAt,
        };
        this.#blobInfo.set(entry.digest, info);
        this.#storedBytes += entry.size;
        this.#metrics.bytes.set(this.#storedBytes);
      }
      entry.digest = info.digest;
      info.ids = addId(info.ids, entry.id);
    }
  }

  /**
   * Points an entry at its query's shared strings and summary. Loaded entries each come with
   * their own copies (decoded from their own records): 100k entries of 10k queries would keep
   * 100k equal summaries and hashes where 10k do.
   */
  #share(entry: Entry, group: Group): void {
    entry.hash = group.hash;
    const summary = entry.summary;
    if (!summary) return;
    if (!group.summary) group.summary = summary;
    else if (summary !== group.summary && sameSummary(summary, group.summary))
      entry.summary = group.summary;
  }

  /** Keeps the last full count of expired entries exact as an entry comes (+1) or goes (-1). */
  #countExpired(entry: Entry, delta: 1 | -1): void {
    const x = this.#expiredCount;
    if (entry.expiresAt <= x.asOf) x[entry.kind] += delta;
    else if (delta > 0 && entry.expiresAt < x.until) x.until = entry.expiresAt;
  }

  #unindex(id: string): void {
    const entry = this.#entries.get(id);
    if (!entry) return;
    this.#dirty = true;
    this.#changes++;
    this.#entries.delete(id);
    this.#tally[entry.kind]--;
    this.#countExpired(entry, -1);
    this.#gone.add(id);
    this.#unindexBlob(entry);
    const group = this.#groups.get(entry.hash);
    if (!group) return;
    group.ids = removeId(group.ids, id);
    group.flight?.ids.delete(id);
    if (group.ids === undefined && !group.flight && !group.lastImage)
      this.#groups.delete(entry.hash);
  }

  #unindexBlob(entry: Entry): void {
    if (entry.kind !== 'image') return;
    const info = this.#blobInfo.get(entry.digest);
    if (info) info.ids = removeId(info.ids, entry.id);
  }

  /**
   * Drops deleted ids from the creation order once they are a fifth of it. In slices: with a
   * million entries one walk holds the event loop for tens of milliseconds. Ids appended meanwhile
   * are kept as they are, and ids deleted meanwhile are skipped by every reader anyway (they are
   * not in #entries), so the swap at the end loses nothing.
   */
  async #compactOrder(): Promise<void> {
    // A quarter more places than entries at most: #gone holds the dead ones' ids until then.
    if (this.#goneBefore || this.#order.length <= this.#entries.size * 1.25 + 1024) return;
    // Ids deleted from now on may have their place in the new arrays: they go in a new #gone.
    // Those deleted before have none once this is done, and may then be ids again.
    this.#goneBefore = this.#gone;
    this.#gone = new Set();
    const from = { order: this.#order, seqs: this.#orderSeq };
    const end = from.order.length;
    const order: string[] = [];
    const seqs: number[] = [];
    for (let i = 0; i < end; i++) {
      const id = from.order[i]!;
      const seq = from.seqs[i]!;
      if (this.#entries.has(id)) {
        order.push(id);
        seqs.push(seq);
      }
      if (i % COUNT_SLICE === COUNT_SLICE - 1) await yieldToLoop();
    }
    // Only this method replaces the arrays; in between they only grow at the end.
    for (let i = end; i < this.#order.length; i++) {
      order.push(this.#order[i]!);
      seqs.push(this.#orderSeq[i]!);
    }
    this.#order = order;
    this.#orderSeq = seqs;
    this.#goneBefore = undefined;
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
      if (this.#entries.get(entry.id) === entry) this.#unindex(entry.id);
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
   * Persists an entry; rejects if it could not be written (logged and counted in #write). The
   * results of a fetch that cannot be saved still work from memory; they would not survive a restart.
   * The store keeps the writes of one id in call order (one journal), and group-commits the writes
   * made in one event-loop turn, so the ids of a settle cost one fsync together.
   */
  #persist(entry: Entry): Promise<void> {
    const write = this.#write(entry);
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
      const saved = this.#store.putEntry(entry);
      if (!this.#checkpointing && this.#store.wantsCheckpoint?.()) void this.checkpoint();
      await saved;
    } catch (err) {
      const code = err instanceof StoreWriteError ? err.code : undefined;
      this.#metrics.storeErrors.inc({ code: code ?? 'unknown' });
      this.#log.error({ id: entry.id, err: (err as Error).message }, 'could not persist entry');
      throw err;
    }
  }

  async #deleteFromStore(ids: string[]): Promise<void> {
    // All at once: the store commits them together, so they share a handful of promises (30k
    // expired ids at a start would otherwise make 30k closures and promises on the way to ready).
    const writes = new Map<Promise<void>, string>();
    for (const id of ids) {
      const write = this.#store.deleteEntry(id);
      if (!writes.has(write)) writes.set(write, id);
    }
    await Promise.all(
      [...writes].map(([write, id]) =>
        write.catch((err: unknown) => {
          this.#log.warn(
            { id, ids: ids.length, err: (err as Error).message },
            'could not delete entry from store',
          );
        }),
      ),
    );
  }
}

function newToken(): string {
  return randomBytes(12).toString('hex');
}
