import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.ts';
import {
  CoordinatorUnavailableError,
  PAGE_MAX_LIMIT,
  PendingCapError,
  type Decision,
  type Coordinator,
  type CoordinatorEvent,
  type Counts,
  type Lease,
  type MaintenanceReport,
  type Outcome,
  type Page,
  type PageRequest,
  type SettleResult,
  type Slot,
} from '../coordination/coordinator.ts';
import type { Entry, ErrorEntry, ImageEntry, PendingEntry } from '../domain/entry.ts';
import { bytesDigest, canonicalQuery, type CanonicalQuery } from '../domain/hash.ts';
import { AppError, StorageError } from '../errors.ts';
import type { KentikClient } from '../kentik/client.ts';
import type { Metrics } from '../metrics.ts';
import { StoreWriteError } from '../store/store.ts';
import { MemoryBlobs } from './blobs.ts';
import { LeaseQueue } from './lease-queue.ts';
import { Waiters, type ClosingEmitter, type WaitOutcome } from './waiters.ts';

/** How a POST was satisfied; see README "How sharing works". */
export type RequestResult = 'hit' | 'shared' | 'miss';

export type Lookup =
  | { kind: 'image'; entry: ImageEntry; bytes: Buffer }
  | { kind: 'error'; entry: ErrorEntry }
  | { kind: 'pending'; entry: PendingEntry }
  | { kind: 'missing'; reason: 'unknown' | 'expired' | 'lost' };

export interface ImageCacheDeps {
  config: Pick<Config, 'memoryCacheBytes' | 'flightLease' | 'kentikApiConcurrency'> &
    Partial<Pick<Config, 'maxPending'>>;
  coordinator: Coordinator;
  client: KentikClient;
  log: FastifyBaseLogger;
  metrics: Metrics;
  now?: () => number;
}

/**
 * Events for live views (the dashboard), local to this process; in Redis mode fed by the other
 * replicas' pub/sub wake-ups too:
 *   'created' (ids: string[])                 new ids handed out by this process
 *   'settled' (ids: string[], hash: string)   a flight settled; ids known here (may be empty)
 *   'deleted' (ids: string[])                 ids removed before their expiry
 *   'reset'   ()                              the shared index was reset
 */
export type CacheEvents = EventEmitter;

/** Finished entries remembered in memory, so a hot GET needs no coordinator round trip. */
const FINISHED_MEMORY_ENTRIES = 200_000;
/** In shared mode, waiters re-check their id this often in case a wake-up message was lost. */
const WAITER_RECHECK_MS = 1500;
/** How long a settle is retried while the shared index is unreachable. */
const SETTLE_RETRY_MS = 500;

interface RunningFlight {
  lease: Lease;
  controller: AbortController;
  done: Promise<void>;
  /** Holds an upstream slot (calling Kentik, or between retries): only these are aborted at shutdown. */
  started?: boolean;
  /** Done with Kentik (slot given back, or never taken): the next queued flight may start. */
  upstreamDone?: boolean;
}

/** What #fetch says when the flight was dropped before calling Kentik (nobody waits on it any more). */
const DROPPED = Symbol('dropped');

/**
 * The one orchestrator of the request-sharing rules: it asks the coordinator to decide, runs the
 * fetches whose leases it holds (renewing them), settles them and wakes the GETs waiting here.
 * Everything that must be shared between processes lives behind the coordinator.
 */
export class ImageCache {
  readonly events: CacheEvents = new EventEmitter();
  readonly waiters: Waiters;
  readonly blobs: MemoryBlobs;
  readonly #coordinator: Coordinator;
  readonly #client: KentikClient;
  readonly #log: FastifyBaseLogger;
  readonly #metrics: Metrics;
  /** kic_image_lookups_total{result="image"}, bound once: counted on every hot GET. */
  readonly #imageFound: ReturnType<Metrics['imageLookups']['labels']>;
  readonly #now: () => number;
  readonly #leaseMs: number;
  readonly #maxPending: number | undefined;
  readonly #concurrency: number;
  /** Finished (image or error) entries: they never change, only expire or get deleted. */
  readonly #finished = new Map<string, ImageEntry | ErrorEntry>();
  /** Flights running as async code (see #pump). */
  readonly #flights = new Map<string, RunningFlight>();
  /** Flights in #flights not yet done with Kentik: at most KENTIK_API_CONCURRENCY. */
  #upstream = 0;
  /** Flights whose lease this process holds, waiting for a place in #flights. */
  readonly #queue = new LeaseQueue();
  /** Tokens of queued leases found lost (taken over) at their last renewal: skipped, not run. */
  readonly #lostQueued = new Set<string>();
  #reportingQueued = false;
  /** Lease releases of queued flights at shutdown (see beginClose). */
  #releasing: Promise<unknown> = Promise.resolve();
  readonly #timers: NodeJS.Timeout[] = [];
  #claiming: Promise<number> | undefined;
  #closing = false;

  constructor({ config, coordinator, client, log, metrics, now = Date.now }: ImageCacheDeps) {
    this.#coordinator = coordinator;
    this.#client = client;
    this.#log = log;
    this.#metrics = metrics;
    this.#imageFound = metrics.imageLookups.labels('image');
    this.#now = now;
    this.#leaseMs = config.flightLease * 1000;
    this.#maxPending = config.maxPending;
    this.#concurrency = config.kentikApiConcurrency;
    this.events.setMaxListeners(0);
    this.waiters = new Waiters((n) => metrics.waiters.set(n));
    this.blobs = new MemoryBlobs(config.memoryCacheBytes, (n) => metrics.memoryBytes.set(n));
    coordinator.onEvent((e) => this.#onEvent(e));
  }

  get backend(): Coordinator['backend'] {
    return this.#coordinator.backend;
  }

  /**
   * Opens the coordinator (loads the index) and takes over flights nobody holds: pending entries
   * left by a previous run, or (shared mode) flights of a replica that died. Resolves once the
   * index is usable; fetches go on after.
   */
  async load(): Promise<OpenReport & { resumed: number }> {
    const report = await this.#coordinator.open();
    // Queued flights are not running code that renews its own lease: one timer renews them all.
    this.#every(Math.max(50, this.#leaseMs / 3), () => this.#renewQueued());
    const resumed = await this.#claim();
    if (this.#coordinator.shared) {
      // Leases run out while nobody watches: scan for orphans twice per lease.
      this.#every(Math.max(100, this.#leaseMs / 2), () => void this.#claim());
      this.#every(WAITER_RECHECK_MS, () => void this.#recheckWaiters());
    }
    return { ...report, resumed };
  }

  /**
   * Applies the sharing rules to a POST; the new entry is stored before its id is returned.
   * `canonical` is canonicalQuery(query), when the caller already knows it.
   */
  async request(
    query: unknown,
    ttlSeconds: number,
    canonical?: CanonicalQuery,
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
    const { hash, json } = canonical ?? canonicalQuery(query);
    const now = this.#now();
    let decision: Decision;
    // A new flight starts as soon as it exists, while its entry is still being written (onFlight).
    let started: Lease | undefined;
    try {
      decision = await this.#coordinator.decide({
        hash,
        query,
        queryJson: json,
        expiresAt: roundExpiry(now, ttlSeconds),
        now,
        ...(this.#maxPending !== undefined ? { maxPending: this.#maxPending } : {}),
        onFlight: (lease) => {
          started = lease;
          this.#startFlight(lease);
        },
      });
    } catch (err) {
      // The entry could not be saved and the flight was withdrawn: stop the fetch it started.
      if (started) this.#cancelFlight(started);
      if (!(err instanceof PendingCapError)) throw err;
      // Refused now rather than handing out an id that would wait for hours behind a flood; hits
      // and shares were decided before the cap. About how long the queue takes to drain, at ~2 s
      // a chart per upstream slot.
      const retryAfter = Math.min(
        300,
        Math.max(5, Math.ceil((2 * err.pending) / this.#concurrency)),
      );
      throw new AppError(
        503,
        'Too busy',
        `${err.pending} fetches are already waiting for Kentik (MAX_PENDING). Images already requested are still served; retry this query after ${retryAfter} s.`,
        ['upstream'],
        { headers: { 'retry-after': String(retryAfter) } },
      );
    }
    this.#metrics.requests.inc({ result: decision.result });
    if (decision.result !== 'hit') this.events.emit('created', [decision.id]);
    if (decision.result === 'shared' && decision.entry.kind === 'image')
      this.#remember(decision.entry);
    if (decision.result === 'miss' && !started) this.#startFlight(decision.lease);
    return { id: decision.id, result: decision.result };
  }

  /** What an id stands for right now; `image` comes with its bytes. */
  async lookup(id: string): Promise<Lookup> {
    const found = await this.#lookup(id);
    this.#metrics.imageLookups.inc({ result: found.kind === 'missing' ? 'not_found' : found.kind });
    return found;
  }

  /**
   * The hot path of GET /image: an image that can be served right now from this process's
   * memory, with no I/O and no coordinator round trip. Undefined whenever lookup() has more to do.
   */
  lookupHot(id: string): Extract<Lookup, { kind: 'image' }> | undefined {
    const entry = this.#finished.get(id);
    if (entry?.kind !== 'image') return undefined;
    const now = this.#now();
    if (entry.expiresAt <= now) return undefined;
    const bytes = this.blobs.peek(entry.digest);
    if (!bytes) return undefined;
    this.#coordinator.noteServed?.(entry.digest, now);
    this.#imageFound.inc();
    this.#metrics.memoryHits.inc();
    return { kind: 'image', entry, bytes };
  }

  async #lookup(id: string): Promise<Lookup> {
    const remembered = this.#finished.get(id);
    const entry = remembered ?? (await this.#coordinator.getEntry(id));
    const now = this.#now();
    // Unknown also when Redis already dropped it at its expiry: the message says both.
    if (!entry) return { kind: 'missing', reason: 'unknown' };
    if (entry.expiresAt <= now) return { kind: 'missing', reason: 'expired' };
    if (entry.kind === 'pending') return { kind: 'pending', entry };
    this.#remember(entry);
    if (entry.kind === 'error') return { kind: 'error', entry };
    this.#coordinator.noteServed?.(entry.digest, now);
    const held = this.blobs.peek(entry.digest);
    if (held && remembered) this.#metrics.memoryHits.inc();
    const bytes = held ?? (await this.blobs.get(entry.digest, () => this.#loadBlob(entry.digest)));
    if (!bytes) {
      this.#log.warn({ id, digest: entry.digest }, 'image bytes missing or damaged; entry dropped');
      this.#finished.delete(id);
      await this.#coordinator.dropBlob(entry.digest, 'lost', id);
      return { kind: 'missing', reason: 'lost' };
    }
    return { kind: 'image', entry, bytes };
  }

  /** Bytes from the coordinator, checked against their digest before anyone is served them. */
  async #loadBlob(digest: string): Promise<Buffer | undefined> {
    const bytes = await this.#coordinator.getBlob(digest);
    if (!bytes) return undefined;
    if (bytesDigest(bytes) !== digest) {
      this.#log.warn({ digest }, 'image file does not match its digest; quarantined');
      await this.#coordinator.dropBlob(digest, 'damaged').catch(() => {});
      return undefined;
    }
    return bytes;
  }

  /** Waits until `id` is no longer pending, the timeout passes, or `client` emits 'close'. */
  waitFor(id: string, timeoutMs: number, client?: ClosingEmitter): Promise<WaitOutcome> {
    if (this.#closing || this.#finished.has(id)) return Promise.resolve('ready');
    // Registered first, checked after: a settle between the two still wakes it.
    const waiting = this.waiters.wait(id, timeoutMs, client);
    void this.#recheck(id);
    return waiting;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** Live entries by id, in the order asked (undefined for unknown or expired ids); no side effects. */
  async entries(ids: string[]): Promise<Array<Entry | undefined>> {
    const now = this.#now();
    return (await this.#coordinator.getEntries(ids)).map((e) =>
      e && e.expiresAt > now ? e : undefined,
    );
  }

  /** Live pending/image ids per query hash: how many ids share each one's fetch or image. */
  async sharing(hashes: string[]): Promise<number[]> {
    return (await this.#coordinator.sharing?.(hashes, this.#now())) ?? hashes.map(() => 1);
  }

  /** Live entries by kind and stored bytes, across every process sharing the index. */
  counts(): Promise<Counts> {
    return this.#coordinator.counts(this.#now());
  }

  /** A page of live entries, newest first; pass `next` back as `cursor` for the following one. */
  page(req: PageRequest): Promise<Page> {
    const limit = Math.max(0, Math.min(PAGE_MAX_LIMIT, Math.floor(req.limit)));
    return this.#coordinator.page({ ...req, limit }, this.#now());
  }

  /** One housekeeping pass (see maintenance.ts). */
  async maintain(): Promise<MaintenanceReport> {
    const now = this.#now();
    const report = await this.#coordinator.maintain(now);
    for (const [id, e] of this.#finished) if (e.expiresAt <= now) this.#finished.delete(id);
    return report;
  }

  /** Throws if the coordinator cannot take writes right now (for /readyz). */
  checkReady(): Promise<void> {
    return this.#coordinator.checkReady();
  }

  /**
   * First step of a shutdown, before the server stops taking requests: wakes every waiting GET at
   * once (answered 503 + Retry-After instead of holding the shutdown until it times out), empties
   * the upstream queue in one pass and aborts only the fetches that are running. Flights are
   * handed over: released to the other replicas (Redis), or left pending in the store for the
   * next start (filesystem).
   */
  beginClose(): void {
    if (this.#closing) return;
    this.#closing = true;
    const started = performance.now();
    for (const t of this.#timers) clearInterval(t);
    const waiting = this.waiters.count;
    const reason = new Error('shutting down');
    // Queued flights are only leases: handed back in one pass, without an abort event each (that
    // would cost seconds for a queue of 100k).
    const queued = this.#queue.drain();
    this.#lostQueued.clear();
    this.#releasing = Promise.allSettled(queued.map((l) => this.#coordinator.releaseLease(l)));
    this.#reportQueued();
    // Running flights still waiting for a slot leave the coordinator's queue in one pass too; a
    // coordinator that cannot do that gets them aborted.
    const rejected = this.#coordinator.rejectQueued?.(reason);
    let aborted = 0;
    for (const f of this.#flights.values()) {
      if (rejected !== undefined && !f.started) continue;
      f.controller.abort(reason);
      aborted++;
    }
    this.waiters.notifyAll();
    this.#log.info(
      {
        fetches: queued.length + (rejected ?? 0) + aborted,
        queued: queued.length + (rejected ?? 0),
        running: aborted,
        waiters: waiting,
        durationMs: Math.round(performance.now() - started),
      },
      'shutdown: fetches stopped (they resume at next start or on another replica), waiting requests answered',
    );
  }

  /** Ends the shutdown: waits for fetches to hand their flights over and saves the snapshot. */
  async close(): Promise<void> {
    this.beginClose();
    await Promise.allSettled([...this.#flights.values()].map((f) => f.done));
    await this.#releasing;
    await this.#coordinator.checkpoint?.();
  }

  #every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.#timers.push(t);
  }

  #remember(entry: ImageEntry | ErrorEntry): void {
    if (this.#finished.has(entry.id)) return;
    this.#finished.set(entry.id, entry);
    if (this.#finished.size > FINISHED_MEMORY_ENTRIES) {
      const oldest = this.#finished.keys().next().value;
      if (oldest !== undefined) this.#finished.delete(oldest);
    }
  }

  #onEvent(event: CoordinatorEvent): void {
    switch (event.type) {
      case 'settled':
        void this.#wake(event.hash, event.ids);
        return;
      case 'deleted':
        for (const id of event.ids) this.#finished.delete(id);
        for (const d of event.digests) this.blobs.forget(d);
        if (event.ids.length > 0) this.events.emit('deleted', event.ids);
        return;
      case 'orphaned':
        void this.#claim();
        return;
      case 'reset':
        this.#log.warn('the shared index was reset (Redis restarted empty): memory copies dropped');
        this.#finished.clear();
        this.blobs.clear();
        this.waiters.notifyAll();
        this.events.emit('reset');
        return;
      case 'connection':
        if (event.up) {
          // Wake-ups may have been lost while the connection was down: re-sync.
          void this.#recheckWaiters();
          void this.#claim();
        }
        return;
    }
  }

  /**
   * A flight settled. The results of every id waiting here are read in one round trip and the
   * bytes once, before the waiters are woken: hundreds of them then answer from memory.
   */
  async #wake(hash: string, ids: string[] | undefined): Promise<void> {
    const waiting = ids ? ids.filter((id) => this.waiters.has(id)) : this.waiters.idsOf(hash);
    try {
      if (waiting.length > 0) {
        let digest: string | undefined;
        for (const e of await this.#coordinator.getEntries(waiting)) {
          if (!e || e.kind === 'pending') continue;
          this.#remember(e);
          if (e.kind === 'image') digest = e.digest;
        }
        if (digest !== undefined) {
          const d = digest;
          await this.blobs.get(d, () => this.#loadBlob(d));
        }
      }
    } catch {
      // Each waiter looks for itself and answers what it finds.
    }
    for (const id of waiting) this.waiters.notify(id);
    this.events.emit('settled', ids ?? waiting, hash);
  }

  /** Wakes the waiters of `id` if it is no longer pending (or cannot be checked now). */
  async #recheck(id: string): Promise<void> {
    try {
      const entry = await this.#coordinator.getEntry(id);
      if (entry?.kind === 'pending' && entry.expiresAt > this.#now()) return;
    } catch {
      // Unreachable index: let the waiter look again and answer what it finds (a 503).
    }
    this.waiters.notify(id);
  }

  async #recheckWaiters(): Promise<void> {
    await Promise.all(this.waiters.waitingIds().map((id) => this.#recheck(id)));
  }

  /** Takes over orphaned flights; one scan at a time. Returns how many were taken. */
  #claim(): Promise<number> {
    if (this.#closing) return Promise.resolve(0);
    this.#claiming ??= (async () => {
      try {
        const leases = await this.#coordinator.claimOrphans(this.#now());
        // One line per scan, not per fetch: a restart with a backlog of 100k pending fetches would
        // otherwise write 100k log lines before it can do anything else.
        if (leases.length > 0) {
          this.#log.info(
            { count: leases.length, hashes: leases.slice(0, 5).map((l) => l.hash) },
            'taking over orphaned fetches',
          );
        }
        for (const lease of leases) {
          this.#log.trace({ hash: lease.hash, id: lease.id }, 'taking over an orphaned fetch');
          this.#metrics.flightTakeovers.inc();
          this.#startFlight(lease);
        }
        return leases.length;
      } catch (err) {
        this.#log.debug({ err: (err as Error).message }, 'could not look for orphaned fetches');
        return 0;
      } finally {
        this.#claiming = undefined;
      }
    })();
    return this.#claiming;
  }

  #startFlight(lease: Lease): void {
    if (this.#closing) {
      void this.#coordinator.releaseLease(lease).catch(() => {});
      return;
    }
    this.#queue.push(lease);
    this.#pump();
  }

  /** Stops a flight this process started (queued or running) whose lease is no longer valid. */
  #cancelFlight(lease: Lease): void {
    const running = this.#flights.get(lease.token);
    if (running) running.controller.abort(new Error('flight withdrawn'));
    else
      for (const queued of this.#queue)
        if (queued.token === lease.token) this.#lostQueued.add(lease.token);
  }

  /**
   * Runs queued flights while fewer than KENTIK_API_CONCURRENCY run: no more could call Kentik at
   * once anyway (the coordinator's slots are the limit, across replicas in Redis mode), so the rest
   * wait as plain leases instead of as suspended async code polling for a slot.
   */
  #pump(): void {
    while (this.#upstream < this.#concurrency && !this.#closing) {
      const lease = this.#queue.shift();
      if (!lease) break;
      if (this.#lostQueued.delete(lease.token)) continue; // taken over meanwhile
      this.#launch(lease);
    }
    this.#reportQueued();
  }

  #launch(lease: Lease): void {
    const controller = new AbortController();
    const flight: RunningFlight = { lease, controller, done: Promise.resolve() };
    this.#upstream++;
    flight.done = this.#runFlight(flight)
      .catch((err: unknown) => this.#log.error({ err }, 'fetch failed unexpectedly'))
      .finally(() => {
        this.#flights.delete(lease.token);
        this.#leaveUpstream(flight);
      });
    this.#flights.set(lease.token, flight);
  }

  /**
   * A flight is done with Kentik: the next queued one starts now, while this one still stores its
   * result (a settle waits for an fsync; the slot should not).
   */
  #leaveUpstream(flight: RunningFlight): void {
    if (flight.upstreamDone) return;
    flight.upstreamDone = true;
    this.#upstream--;
    this.#pump();
  }

  /** Renews the leases of queued flights; one found lost is skipped when its turn comes. */
  #renewQueued(): void {
    if (this.#queue.length === 0) return;
    const now = this.#now();
    for (const lease of this.#queue) {
      this.#coordinator.renewLease(lease, now).then(
        (held) => {
          if (!held) this.#lostQueued.add(lease.token);
        },
        () => {}, // unreachable: try again at the next tick; settle decides in the end
      );
    }
  }

  /** kic_upstream_queued: fetches waiting for an upstream slot, one gauge update per burst. */
  #reportQueued(): void {
    if (this.#reportingQueued) return;
    this.#reportingQueued = true;
    queueMicrotask(() => {
      this.#reportingQueued = false;
      // Plus the running flights still waiting for their slot (at most KENTIK_API_CONCURRENCY).
      let acquiring = 0;
      for (const f of this.#flights.values()) if (!f.started && !f.upstreamDone) acquiring++;
      this.#metrics.upstreamQueued.set(this.#queue.length + acquiring);
    });
  }

  async #runFlight(flight: RunningFlight): Promise<void> {
    const { lease, controller } = flight;
    const { signal } = controller;
    let slot: Slot | undefined;
    let leaseLost = false;
    // The lease is renewed while the fetch runs; a lost lease (we were paused past it and another
    // process took over) stops this fetch, and its result would be rejected anyway.
    const renew = setInterval(
      () => {
        void slot?.renew().catch(() => {});
        this.#coordinator.renewLease(lease, this.#now()).then(
          (held) => {
            if (held) return;
            leaseLost = true;
            controller.abort(new Error('flight lease lost'));
          },
          () => {}, // unreachable: try again at the next tick; settle decides in the end
        );
      },
      Math.max(50, this.#leaseMs / 3),
    );
    renew.unref();

    let outcome: Outcome;
    let result: SettleResult;
    try {
      let fetched: Outcome | typeof DROPPED;
      try {
        fetched = await this.#fetch(lease, signal, (s) => {
          slot = s;
          flight.started = true;
          this.#reportQueued();
        });
      } finally {
        await slot?.release().catch(() => {});
        this.#leaveUpstream(flight);
      }
      if (fetched === DROPPED) {
        this.#metrics.upstreamFetches.inc({ outcome: 'dropped' });
        this.#log.info({ hash: lease.hash }, 'queued fetch dropped: all its ids expired');
        return;
      }
      outcome = fetched;
      // Still renewing while the result is stored: a slow write must not cost the lease.
      result = await this.#settle(lease, outcome);
    } catch (err) {
      if (leaseLost) {
        this.#log.warn({ hash: lease.hash }, 'fetch abandoned: its lease was taken over');
        return;
      }
      if (signal.aborted || this.#closing) {
        // Shutting down: hand the flight over now (filesystem: it stays pending for the next start).
        await this.#coordinator.releaseLease(lease).catch(() => {});
        return;
      }
      if (err instanceof CoordinatorUnavailableError) {
        this.#log.warn(
          { hash: lease.hash, err: err.message },
          'fetch result dropped: the shared index stayed unreachable; the flight is fetched again once its lease runs out',
        );
        return;
      }
      throw err;
    } finally {
      clearInterval(renew);
    }
    this.#metrics.settles.inc({ outcome: result.accepted ? 'accepted' : 'rejected' });
    if (!result.accepted) {
      this.#log.warn({ hash: lease.hash }, 'late result rejected: the flight was taken over');
      return;
    }
    this.#log.debug(
      {
        hash: lease.hash,
        ids: result.ids.length,
        outcome: outcome.kind === 'image' ? 'image' : outcome.errorType,
      },
      'fetch settled',
    );
  }

  /** Calls Kentik under a slot and stores the bytes; every failure becomes an error outcome. */
  async #fetch(
    lease: Lease,
    signal: AbortSignal,
    onSlot: (s: Slot) => void,
  ): Promise<Outcome | typeof DROPPED> {
    let image;
    try {
      const slot = await this.#coordinator.acquireSlot(signal);
      onSlot(slot);
      // Decided when the fetch leaves the queue, not when it joined: if every id it was for has
      // expired or been evicted meanwhile, nobody can ever see the answer, so Kentik is not asked.
      if (await this.#coordinator.dropUnwanted(lease, this.#now()).catch(() => false))
        return DROPPED;
      image = await this.#client.fetchChart(lease.query, {
        id: lease.id,
        signal,
        beforeAttempt: (s) => this.#upstreamGate(s),
        onRetryAfter: (ms) => void this.#coordinator.holdUpstream(this.#now() + ms).catch(() => {}),
      });
    } catch (err) {
      // Shutting down (aborted, or taken out of the upstream queue): no result, no error entry.
      if (signal.aborted || this.#closing) throw err;
      if (err instanceof AppError) return errorOutcome(err);
      this.#log.error({ err }, 'unexpected fetch failure');
      return errorOutcome(
        new AppError(
          500,
          'Internal error',
          `Fetching the image failed unexpectedly: ${(err as Error).message}`,
        ),
      );
    }
    const digest = bytesDigest(image.bytes);
    try {
      await this.#retryWhileUnavailable(() =>
        this.#coordinator.putBlob(digest, image.bytes, this.#now() + 2 * this.#leaseMs),
      );
    } catch (err) {
      // Redis stayed away: no result is better than a wrong one. The lease runs out and whoever
      // holds the flight next fetches again.
      if (signal.aborted || err instanceof CoordinatorUnavailableError) throw err;
      const code = err instanceof StoreWriteError ? err.code : undefined;
      this.#metrics.storeErrors.inc({ code: code ?? 'unknown' });
      this.#log.error({ id: lease.id, err: (err as Error).message }, 'could not store image');
      return errorOutcome(
        new StorageError(
          code === 'ENOSPC'
            ? 'The image was fetched but could not be stored: the cache disk is full (ENOSPC). Free space or raise CACHE_MAX_BYTES headroom, then POST the query again.'
            : `The image was fetched but could not be stored (${code ?? (err as Error).message}). Check the cache storage, then POST the query again.`,
          { cause: err },
        ),
      );
    }
    this.blobs.remember(digest, image.bytes);
    return {
      kind: 'image',
      digest,
      mime: image.mime,
      size: image.bytes.length,
      fetchedAt: this.#now(),
    };
  }

  /** A Retry-After seen by any process holds every upstream call back until it has passed. */
  async #upstreamGate(signal?: AbortSignal): Promise<void> {
    for (;;) {
      let until: number;
      try {
        until = await this.#coordinator.upstreamHeldUntil();
      } catch {
        return; // cannot tell: the call itself will meet Kentik's answer
      }
      const wait = until - this.#now();
      if (wait <= 0) return;
      this.#log.debug({ waitMs: wait }, 'upstream held back by a Retry-After');
      await sleep(wait, undefined, { signal });
    }
  }

  /** Settles, retrying while the index is unreachable, as long as the lease could still hold. */
  #settle(lease: Lease, outcome: Outcome): Promise<SettleResult> {
    return this.#retryWhileUnavailable(() => this.#coordinator.settle(lease, outcome, this.#now()));
  }

  async #retryWhileUnavailable<T>(op: () => Promise<T>): Promise<T> {
    const giveUpAt = this.#now() + this.#leaseMs;
    for (;;) {
      try {
        return await op();
      } catch (err) {
        if (!(err instanceof CoordinatorUnavailableError) || this.#now() > giveUpAt) throw err;
        await sleep(SETTLE_RETRY_MS);
      }
    }
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

function errorOutcome(err: AppError): Outcome {
  return { kind: 'error', status: err.statusCode, errorType: err.type, message: err.message };
}

type OpenReport = Awaited<ReturnType<Coordinator['open']>>;
export type { Entry };
