import type { Entry } from '../domain/entry.ts';

/** A file the store could not read as an entry; it was moved aside, never deleted. */
export interface Quarantined {
  name: string;
  reason: string;
  movedTo: string;
}

export interface LoadResult {
  entries: Entry[];
  quarantined: Quarantined[];
  /** With `expiredBefore`: the ids stored that expire at or before it, not in `entries`. */
  expired?: string[];
}

export interface LoadOptions {
  /**
   * Epoch ms: entries whose id expires at or before it come back as ids in `expired` only, and
   * the store forgets them by itself (the filesystem store at its next compaction): the caller
   * neither indexes nor deletes them. A backend that ignores the option returns them as entries.
   */
  expiredBefore?: number;
}

/**
 * Everything the cache persists, behind a narrow async interface so a second backend (Redis) can
 * replace the filesystem. Entries are small JSON records keyed by id; blobs are image bytes keyed by
 * the sha256 of their content, so ids that share a fetch share one blob.
 *
 * Contract (see store.contract.ts): writes are atomic — a reader sees the old or the new value,
 * never a torn one — and durable once they resolve; writes of one key land in the order they were
 * called; a missing key reads as `undefined` and deleting it is not an error.
 */
export interface Store {
  /** Creates what the backend needs (directories, connections). Idempotent. */
  open(): Promise<void>;
  /** Every stored entry; unreadable records are quarantined and reported, never fatal. */
  loadEntries(options?: LoadOptions): Promise<LoadResult>;
  /**
   * Saves the current entries in whatever form makes the next `loadEntries` fast (a backend that
   * loads fast anyway may do nothing); the filesystem store compacts its journal into its snapshot.
   * `entries` must be every entry the store holds (the caller's index), as of the call. Called by
   * maintenance, at shutdown and when `wantsCheckpoint()` says so; never needed for correctness.
   */
  checkpoint(entries: Iterable<Entry>): Promise<void>;
  /** Optional: the store has grown enough since the last checkpoint to want one now. */
  wantsCheckpoint?(): boolean;
  getEntry(id: string): Promise<Entry | undefined>;
  putEntry(entry: Entry): Promise<void>;
  deleteEntry(id: string): Promise<void>;
  getBlob(digest: string): Promise<Buffer | undefined>;
  putBlob(digest: string, bytes: Uint8Array): Promise<void>;
  deleteBlob(digest: string): Promise<void>;
  /** Digests of every stored blob (to find orphans a crash left between blob and entry writes). */
  listBlobs(): Promise<string[]>;
  /** Moves a record aside that proved bad after loading (e.g. a blob whose bytes fail their digest). */
  quarantineBlob(digest: string, reason: string): Promise<void>;
  /** Removes temporary files left by interrupted writes; returns how many. */
  sweepTemporary(): Promise<number>;
  /** Throws if the store cannot take writes right now (for /readyz). */
  checkWritable(): Promise<void>;
  close(): Promise<void>;
}

/** Thrown by a store write; `code` carries the system error (ENOSPC, EACCES…) if there was one. */
export class StoreWriteError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'StoreWriteError';
  }
}

/**
 * Thrown by a store read when stored data exists but cannot be read (EACCES, ENOTDIR, EIO…), as
 * opposed to data that is simply not there. Answered 503 naming the cause, never a generic 500.
 */
export class StoreReadError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'StoreReadError';
  }
}
