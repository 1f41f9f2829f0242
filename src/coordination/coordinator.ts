import type { Entry, ImageMime, PendingEntry, QueryJson } from '../domain/entry.ts';
import { AppError } from '../errors.ts';

/**
 * What must be shared between the processes that serve one cache, behind one interface with an
 * in-process implementation (`local.ts`: maps over the filesystem store) and a Redis one
 * (`redis/`). The orchestrator (src/cache/image-cache.ts) runs the request-sharing rules on top of
 * it: it fetches, settles and wakes; a coordinator only decides and records, atomically.
 * coordinator.contract.ts is the behaviour both must have. See docs/design/coordination.md.
 */
export interface Coordinator {
  readonly backend: 'filesystem' | 'redis';
  /** True when other processes share this index (then waiters need a slow fallback re-check). */
  readonly shared: boolean;

  /** Connects or loads. Pending entries found here are orphaned flights for claimOrphans(). */
  open(): Promise<OpenReport>;

  /**
   * Rules 1–3 for one POST, atomically: a hit on a live entry that lives long enough, a new id
   * sharing a flight or a recent image, or a new id with a new flight whose lease the caller now
   * holds. The new entry is stored (durably: a failed save throws and withdraws the id) before the
   * id is returned. With `maxPending`, rule 3 throws PendingCapError instead when that many flights exist.
   */
  decide(input: DecideInput): Promise<Decision>;
  getEntry(id: string): Promise<Entry | undefined>;
  /** Several entries in one round trip, in the order asked. */
  getEntries(ids: string[]): Promise<Array<Entry | undefined>>;
  /** Optional, synchronous: an image was served (for least-recently-served eviction). */
  noteServed?(digest: string, now: number): void;

  /** Extends a flight's lease; false when the lease was lost (taken over): stop fetching. */
  renewLease(lease: Lease, now: number): Promise<boolean>;
  /** Takes over flights whose lease ran out (a dead or paused holder, or pending at load). */
  claimOrphans(now: number): Promise<Lease[]>;
  /** Gives a flight up at once (shutdown), so another process takes it over without waiting. */
  releaseLease(lease: Lease): Promise<void>;
  /**
   * Called once a flight holds its upstream slot: if no live pending id waits on it any more (all
   * expired or evicted while it queued), the flight ends without a result and true is returned,
   * so Kentik is not asked for an answer nobody can see.
   */
  dropUnwanted(lease: Lease, now: number): Promise<boolean>;
  /**
   * Writes the outcome to every id waiting on the flight, if `lease` still holds it; a late
   * result of a lease that was taken over is rejected and changes nothing.
   */
  settle(lease: Lease, outcome: Outcome, now: number): Promise<SettleResult>;

  /** Content-addressed bytes; stored once, kept at least until `keepUntil` (life only grows). */
  putBlob(digest: string, bytes: Buffer, keepUntil: number): Promise<void>;
  getBlob(digest: string): Promise<Buffer | undefined>;
  /** The bytes are gone or damaged: forget them and every id that uses them (or at least `id`). */
  dropBlob(digest: string, reason: 'lost' | 'damaged', id?: string): Promise<void>;

  /** One of KENTIK_API_CONCURRENCY upstream slots (across every process sharing the index). */
  acquireSlot(signal?: AbortSignal): Promise<Slot>;
  /**
   * Optional (shutdown): fails every acquireSlot() still queued in this process at once, in one
   * pass, and says how many. Without it the orchestrator aborts each queued fetch's signal.
   */
  rejectQueued?(reason: unknown): number;
  /** Optional (shutdown): saves whatever makes the next start fast (the index snapshot). */
  checkpoint?(): Promise<void>;
  /** A Retry-After seen by anyone holds back every upstream call until `untilMs`. */
  holdUpstream(untilMs: number): Promise<void>;
  upstreamHeldUntil(): Promise<number>;

  counts(now: number): Promise<Counts>;
  /**
   * For each query hash, how many live pending or image ids it has (they share one fetch or one
   * image). For people (the dashboard, /info); optional, 1 each when absent.
   */
  sharing?(hashes: string[], now: number): Promise<number[]>;
  /** Newest first; `next` continues after the last entry returned. */
  page(req: PageRequest, now: number): Promise<Page>;

  /** Change notifications, local and (Redis) from other processes. */
  onEvent(listener: (event: CoordinatorEvent) => void): void;

  /** Periodic housekeeping (expiry, eviction, unused bytes); any process may run it. */
  maintain(now: number): Promise<MaintenanceReport>;
  /** Throws if writes cannot be taken right now (for /readyz). */
  checkReady(): Promise<void>;
  close(): Promise<void>;
}

export interface DecideInput {
  hash: string;
  /** The parsed query (its summary is made from it). */
  query: unknown;
  /** The same query as JSON text (its canonical form), which a new entry keeps. */
  queryJson: QueryJson;
  expiresAt: number;
  now: number;
  /** MAX_PENDING: flights (queued or running) beyond which a new flight is refused (PendingCapError). */
  maxPending?: number;
  /**
   * Optional: a coordinator whose entry write is slow (an fsync) calls this with a new flight's
   * lease as soon as the flight exists, before the entry is durable, so the upstream fetch overlaps
   * the write instead of following it. The id is still handed out only once durable. If the write
   * then fails, decide throws and the caller stops what it started. Called at most once, and only
   * for a decision that is (or would have been) a `miss` with that lease.
   */
  onFlight?: (lease: Lease) => void;
}

export interface Lease {
  hash: string;
  token: string;
  query: QueryJson;
  /** One id waiting on the flight, to name it in logs. */
  id: string;
}

export type Decision =
  | { result: 'hit'; id: string }
  | { result: 'shared'; id: string; entry: Entry }
  | { result: 'miss'; id: string; entry: PendingEntry; lease: Lease };

/** decide(): rule 3 applied but `maxPending` flights already exist (`pending` of them); nothing stored. */
export class PendingCapError extends Error {
  constructor(readonly pending: number) {
    super(`${pending} flights are already pending (MAX_PENDING)`);
  }
}

export type Outcome =
  | { kind: 'image'; digest: string; mime: ImageMime; size: number; fetchedAt: number }
  | { kind: 'error'; status: number; errorType: string; message: string };

export type SettleResult = { accepted: true; ids: string[] } | { accepted: false };

export interface Slot {
  /** Keeps a slot alive while a long fetch runs (Redis: it carries a lease). */
  renew(): Promise<void>;
  release(): Promise<void>;
}

export interface Counts {
  pending: number;
  image: number;
  error: number;
  storedBytes: number;
}

export type PageKind = Entry['kind'] | 'active';

export interface PageRequest {
  cursor?: string;
  /** At most PAGE_MAX_LIMIT. */
  limit: number;
  kind?: PageKind;
}

export interface Page {
  entries: Entry[];
  next?: string;
}

export const PAGE_MAX_LIMIT = 1000;

export type CoordinatorEvent =
  /** A flight settled; `ids` when the settling process knows them (always, in this process). */
  | { type: 'settled'; hash: string; ids?: string[] }
  /** Entries or bytes went away before their expiry (eviction, lost bytes). */
  | { type: 'deleted'; ids: string[]; digests: string[] }
  /** A flight's lease was given up: claim it now rather than at the next scan. */
  | { type: 'orphaned'; hash: string }
  /** The shared index was reset (Redis restarted empty): drop every memory copy. */
  | { type: 'reset' }
  /** Connection to the shared index lost or back. */
  | { type: 'connection'; up: boolean };

export interface OpenReport {
  loaded: number;
  expired: number;
  quarantined: number;
}

export interface MaintenanceReport {
  expired: number;
  blobsDeleted: number;
  orphansDeleted: number;
  tempFilesDeleted: number;
  evicted: number;
}

/** The shared index cannot be reached: answered 503 with Retry-After, never a silent fallback. */
export class CoordinatorUnavailableError extends AppError {
  constructor(detail: string, options?: ErrorOptions) {
    super(
      503,
      'Service unavailable',
      `The shared cache index (Redis) cannot be reached: ${detail}. Retry in a few seconds.`,
      ['storage'],
      { ...options, headers: { 'retry-after': '2' } },
    );
  }
}

export const matchesKind = (kind: PageKind | undefined, entry: Entry): boolean =>
  kind === undefined || (kind === 'active' ? entry.kind !== 'pending' : entry.kind === kind);
