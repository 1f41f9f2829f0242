import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readFileSync, readSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../domain/entry.ts';
import { decodeEntry } from '../domain/entry-codec.ts';
import { ID_PATTERN } from '../domain/ids.ts';
import { Journal } from './journal.ts';
import { parseRecord, RecordWriter, type ReadContext } from './records.ts';
import { acquireDirectoryLock, type DirectoryLock } from './lock.ts';
import {
  StoreReadError,
  StoreWriteError,
  type LoadOptions,
  type LoadResult,
  type Quarantined,
  type Store,
} from './store.ts';

const TEMP_PREFIX = '.tmp-';
const ENTRY_SUFFIX = '.json';
const DIGEST_PATTERN = /^[0-9a-f]{64}$/;
const JOURNAL_PATTERN = /^journal-([0-9]{1,15})$/;
const SNAPSHOT = 'index.snapshot';
/** 3: records of the format with one `Q` record per query (records.ts); 2 (read only): `P` records. */
const SNAPSHOT_VERSION = 3;
const SNAPSHOT_VERSIONS_READ = [2, 3];
const SNAPSHOT_KEY = 'kentik-image-cache-snapshot';
/**
 * How much of the snapshot is serialised between two writes (and event-loop turns): by size, not
 * by entry count, since a pending entry carries its whole query (a few KB) and 2,000 of them would
 * hold the event loop for tens of milliseconds while POSTs wait. Under V8's 128 KB limit for
 * ordinary objects: each slice's string then dies young, where larger ones go to the large-object
 * space and, 200 MB of them for a million entries, set off full collections during the pass.
 */
const SNAPSHOT_SLICE_CHARS = 64 * 1024;
/** Entry records are a few hundred bytes (pending ones carry a query of a few KB). */
const READ_BUFFER_BYTES = 64 * 1024;
/**
 * A checkpoint compacts the journal into the snapshot only once the journal holds at least this
 * share of the snapshot's size: rewriting 100k entries every maintenance pass for a handful of
 * changes would cost more than replaying them at the next start.
 */
const COMPACT_SHARE = 1 / 8;
/** The journal grown past this (and past the snapshot) asks for a checkpoint between maintenance passes. */
const COMPACT_AFTER_BYTES = 32 * 1024 * 1024;

const isMissing = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT';

/** Something the load could not use; a whole file is moved aside, a bad record copied aside. */
export interface Bad {
  /** Relative to the root, for messages. */
  name: string;
  reason: string;
  file?: string;
  bytes?: Buffer;
}

/** Where replayFile applies the records it reads. */
export interface ReplayTarget {
  entries: Map<string, Entry>;
  /** Ids expired at `expiredBefore` (their records are not made into entries). */
  expired: Set<string>;
  bad: Bad[];
  /** One string per hash, digest and error type across the files read (see records.ts ReadContext). */
  strings: Map<string, string>;
  words: Map<string, string>;
  expiredBefore?: number | undefined;
}

/** What is on disk, read without changing anything. */
export interface StoreScan extends ReplayTarget {
  /** Generation the snapshot covers the journals up to (a snapshot of format 2 or 3), if there is one. */
  snapshotGeneration: number | undefined;
  snapshotBytes: number;
  /** Journal generations found in entries/. */
  journals: number[];
  /** entries/<id>.json files of the format before the journal (read only when there is no snapshot). */
  legacyFiles: string[];
  /** An index.snapshot of the format before the journal (a shortcut then; ignored now). */
  oldSnapshot: boolean;
  journalRecords: number;
  /** `P` records (the format before `Q`/`E`) found: the next checkpoint rewrites them. */
  oldRecords: number;
}

/**
 * Layout under the root:
 *   index.snapshot        every entry as of a journal generation G (header line, then records)
 *   entries/journal-<N>   every entry write and delete since, appended in order (N ≥ G)
 *   blobs/<sha256>        image bytes, content-addressed
 *   quarantine/           what could not be read, moved or copied aside for a human to look at
 * Records are checksummed lines (see journal.ts). Entry writes are group-committed: the writes
 * that arrive while the disk is busy go together with one fdatasync, and each resolves once its
 * record is durable. A load reads the snapshot, then replays the journals from G on, each with one
 * sequential read; a record a crash tore (the last, unterminated line) counts as never written.
 * A checkpoint rotates the journal, writes the snapshot of every entry (temp, fsync, rename, dir
 * fsync) and only then deletes the journals it covers, so a crash at any point loses nothing.
 * Blobs and the snapshot are written to `.tmp-*` in the same directory, fsynced, then renamed
 * over the target, so a crash leaves the old or the new file and at worst a stray temp file that
 * maintenance removes.
 */
export class FsStore implements Store {
  readonly #entries: string;
  readonly #blobs: string;
  readonly #quarantine: string;
  /** Temp files being written right now: sweepTemporary must not delete these. */
  readonly #activeTemps = new Set<string>();
  #lock: DirectoryLock | undefined;
  #journal: Journal | undefined;
  #snapshotBytes = 0;
  /** Left over from a load (legacy files, bad records): the next checkpoint compacts whatever the share. */
  #mustCompact = false;
  #cleanup: Promise<void> = Promise.resolve();

  constructor(readonly root: string) {
    this.#entries = path.join(root, 'entries');
    this.#blobs = path.join(root, 'blobs');
    this.#quarantine = path.join(root, 'quarantine');
  }

  /**
   * Creates the folders and takes the directory lock: a second process on the same CACHE_PATH would
   * delete this one's files as orphans, so it refuses to start instead (CachePathLockedError).
   * Writes go to a journal generation newer than any on disk: never after a previous run's tail.
   */
  async open(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true });
    this.#lock ??= await acquireDirectoryLock(this.root);
    for (const dir of [this.#entries, this.#blobs, this.#quarantine])
      await fs.mkdir(dir, { recursive: true });
    if (this.#journal) return;
    const journals = journalGenerations(await fs.readdir(this.#entries));
    const snap = await readSnapshotHeader(path.join(this.root, SNAPSHOT));
    this.#snapshotBytes = snap.bytes;
    const newest = Math.max(0, snap.generation ?? 0, ...journals);
    this.#journal = new Journal(this.#entries, newest + 1, fsyncDir);
  }

  #checkId(id: string): void {
    // Ids are validated by the caller too; this second check keeps the store safe on its own.
    if (!ID_PATTERN.test(id))
      throw new RangeError(`invalid entry id ${JSON.stringify(id.slice(0, 100))}`);
  }

  #blobPath(digest: string): string {
    if (!DIGEST_PATTERN.test(digest))
      throw new RangeError(`invalid blob digest ${JSON.stringify(digest.slice(0, 100))}`);
    return path.join(this.#blobs, digest);
  }

  /**
   * The snapshot, then the journals from its generation on, each read in one go. Unreadable
   * records and files are quarantined and reported; if there were any (or entry files of the
   * format before the journal), the entries are compacted into a new snapshot at once, so the
   * next load neither finds them again nor depends on the old files.
   */
  async loadEntries(options: LoadOptions = {}): Promise<LoadResult> {
    const scan = await scanStore(this.root, options.expiredBefore);
    const quarantined: Quarantined[] = [];
    for (const bad of scan.bad) {
      const movedTo = bad.file
        ? await this.#moveAside(bad.file, path.basename(bad.name))
        : await this.#copyAside(bad.bytes ?? Buffer.alloc(0), path.basename(bad.name));
      quarantined.push({ name: bad.name, reason: bad.reason, movedTo });
    }
    const entries = [...scan.entries.values()];
    if (scan.bad.length > 0 || scan.legacyFiles.length > 0 || scan.oldSnapshot) {
      this.#mustCompact = true;
      await this.#compact(entries);
    } else if (scan.oldRecords > 0) {
      // Readable as they are: rewritten at the next checkpoint, not on the way to readiness.
      this.#mustCompact = true;
    }
    const result: LoadResult = { entries, quarantined };
    if (options.expiredBefore !== undefined) {
      result.expired = [...scan.expired];
      // They are dropped by the next compaction (which writes only what the caller holds), and
      // skipped cheaply until then: forced only once they are a share worth rewriting for.
      if (scan.expired.size > 0 && scan.expired.size >= scan.entries.size * COMPACT_SHARE)
        this.#mustCompact = true;
    }
    return result;
  }

  /**
   * Compacts the journal into the snapshot. `all` must be every entry the store holds as of this
   * call (the caller's index); entries written or deleted while it is iterated are in the new
   * journal generation too, so either way the load finds their last state.
   */
  async checkpoint(all: Iterable<Entry>): Promise<void> {
    const journal = this.#journalOrThrow();
    if (!this.#mustCompact && journal.bytes < this.#snapshotBytes * COMPACT_SHARE) return;
    await this.#compact(all);
  }

  /** True when the journal has grown enough to be worth compacting before the next maintenance pass. */
  wantsCheckpoint(): boolean {
    const bytes = this.#journal?.bytes ?? 0;
    return bytes > COMPACT_AFTER_BYTES && bytes > this.#snapshotBytes;
  }

  async #compact(all: Iterable<Entry>): Promise<void> {
    const generation = await this.#journalOrThrow().rotate();
    this.#snapshotBytes = await this.#writeSnapshot(all, generation);
    this.#mustCompact = false;
    // Everything before `generation` is in the snapshot now: the older journals and any entry
    // files of the old format can go. Not needed for correctness (a load ignores them), so a
    // failure here is no failure of the checkpoint.
    const names = await fs.readdir(this.#entries).catch(() => [] as string[]);
    for (const g of journalGenerations(names))
      if (g < generation)
        await fs.rm(path.join(this.#entries, Journal.fileName(g)), { force: true }).catch(() => {});
    // Possibly 100k of them after an upgrade: not on the way to readiness.
    const legacy = names.filter(isLegacyName);
    if (legacy.length > 0)
      this.#cleanup = this.#cleanup.then(async () => {
        for (const n of legacy)
          await fs.rm(path.join(this.#entries, n), { force: true }).catch(() => {});
      });
  }

  /** Writes the snapshot in slices, so a large cache does not stall requests while it is written. */
  async #writeSnapshot(all: Iterable<Entry>, generation: number): Promise<number> {
    const temp = path.join(this.root, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    this.#activeTemps.add(temp);
    let handle: fs.FileHandle | undefined;
    try {
      handle = await fs.open(temp, 'w', 0o644);
      let chunk = JSON.stringify({ [SNAPSHOT_KEY]: SNAPSHOT_VERSION, journal: generation }) + '\n';
      let bytes = 0;
      // One `Q` record per query in the file, before its first entry that needs it.
      const writer = new RecordWriter();
      for (const entry of all) {
        chunk += writer.put(entry);
        if (chunk.length >= SNAPSHOT_SLICE_CHARS) {
          bytes += chunk.length;
          await handle.write(chunk);
          chunk = '';
        }
      }
      bytes += chunk.length;
      await handle.write(chunk);
      await handle.sync();
      await handle.close();
      handle = undefined;
      await fs.rename(temp, path.join(this.root, SNAPSHOT));
      await fsyncDir(this.root);
      return bytes;
    } catch (err) {
      await handle?.close().catch(() => {});
      await fs.rm(temp, { force: true }).catch(() => {});
      const code = (err as NodeJS.ErrnoException).code;
      throw new StoreWriteError(
        `could not write ${SNAPSHOT}: ${code ?? (err as Error).message}`,
        code,
        { cause: err },
      );
    } finally {
      this.#activeTemps.delete(temp);
    }
  }

  #journalOrThrow(): Journal {
    if (!this.#journal) throw new Error('FsStore used before open()');
    return this.#journal;
  }

  /** A bad record, copied aside before the compaction that drops it. */
  async #copyAside(bytes: Buffer, name: string): Promise<string> {
    const target = path.join(
      this.#quarantine,
      `${name}.${Date.now()}.${randomBytes(3).toString('hex')}`,
    );
    try {
      await fs.writeFile(target, bytes, { mode: 0o644 });
      return target;
    } catch {
      return '(lost: could not be copied)';
    }
  }

  async #moveAside(file: string, name: string): Promise<string> {
    const target = path.join(
      this.#quarantine,
      `${name}.${Date.now()}.${randomBytes(3).toString('hex')}`,
    );
    try {
      await fs.rename(file, target);
    } catch (err) {
      if (isMissing(err)) return target;
      // Could not move it: delete it rather than trip over it at every start.
      await fs.rm(file, { force: true });
      return '(deleted: could not be moved)';
    }
    return target;
  }

  /**
   * Reads the whole store: for tests and tools. The running service never calls it (the
   * coordinator keeps its own index), so it is a load rather than an index of its own.
   */
  async getEntry(id: string): Promise<Entry | undefined> {
    this.#checkId(id);
    try {
      return (await scanStore(this.root)).entries.get(id);
    } catch (err) {
      throw this.#readError(this.#entries, err);
    }
  }

  #readError(file: string, err: unknown): StoreReadError {
    const code = (err as NodeJS.ErrnoException).code;
    return new StoreReadError(
      `Cannot read ${path.relative(this.root, file)} (${code ?? (err as Error).message})`,
      code,
      { cause: err },
    );
  }

  putEntry(entry: Entry): Promise<void> {
    this.#checkId(entry.id);
    return this.#journalOrThrow().put(entry);
  }

  /** Deletes made in one turn resolve with one and the same promise (see LocalCoordinator). */
  deleteEntry(id: string): Promise<void> {
    try {
      this.#checkId(id);
      return this.#journalOrThrow().delete(id);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  async getBlob(digest: string): Promise<Buffer | undefined> {
    const file = this.#blobPath(digest);
    try {
      return await fs.readFile(file);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.#readError(file, err);
    }
  }

  async putBlob(digest: string, bytes: Uint8Array): Promise<void> {
    const target = this.#blobPath(digest);
    // Content-addressed: if it is there, it is these bytes (rename made it whole).
    try {
      await fs.access(target, constants.F_OK);
      return;
    } catch {
      // not there yet
    }
    await this.#writeAtomic(this.#blobs, target, bytes);
  }

  async deleteBlob(digest: string): Promise<void> {
    await fs.rm(this.#blobPath(digest), { force: true });
  }

  async listBlobs(): Promise<string[]> {
    return (await fs.readdir(this.#blobs)).filter((n) => DIGEST_PATTERN.test(n));
  }

  async quarantineBlob(digest: string, _reason: string): Promise<void> {
    await this.#moveAside(this.#blobPath(digest), digest);
  }

  async sweepTemporary(): Promise<number> {
    let removed = 0;
    // The root too: checkWritable (every /readyz) writes its check file through a temp file there.
    for (const dir of [this.root, this.#entries, this.#blobs]) {
      for (const name of await fs.readdir(dir)) {
        const file = path.join(dir, name);
        if (!name.startsWith(TEMP_PREFIX) || this.#activeTemps.has(file)) continue;
        await fs.rm(file, { force: true });
        removed++;
      }
    }
    return removed;
  }

  /**
   * Every folder the service writes must exist and take a write: a CACHE_PATH deleted and recreated
   * empty under a running service gets its folders back here instead of failing every save.
   */
  async checkWritable(): Promise<void> {
    for (const dir of [this.root, this.#entries, this.#blobs, this.#quarantine]) {
      try {
        await fs.mkdir(dir, { recursive: true });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new StoreWriteError(
          `cannot create ${path.relative(this.root, dir) || 'CACHE_PATH'}/ (${code ?? (err as Error).message})`,
          code,
          { cause: err },
        );
      }
      await this.#writeAtomic(dir, path.join(dir, `${TEMP_PREFIX}write-check`), String(Date.now()));
      await fs.rm(path.join(dir, `${TEMP_PREFIX}write-check`), { force: true });
    }
  }

  async close(): Promise<void> {
    await this.#journal?.close();
    await this.#cleanup;
    this.#lock?.release();
    this.#lock = undefined;
  }

  async #writeAtomic(dir: string, target: string, data: string | Uint8Array): Promise<void> {
    const temp = path.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    this.#activeTemps.add(temp);
    let handle: fs.FileHandle | undefined;
    try {
      handle = await fs.open(temp, 'w', 0o644);
      await handle.writeFile(data);
      await handle.sync();
      await handle.close();
      handle = undefined;
      await fs.rename(temp, target);
      // The rename is durable only once the directory is: without this, a power loss could forget
      // an entry whose id was already handed out.
      await fsyncDir(dir);
    } catch (err) {
      await handle?.close().catch(() => {});
      await fs.rm(temp, { force: true }).catch(() => {});
      const code = (err as NodeJS.ErrnoException).code;
      throw new StoreWriteError(
        `could not write ${path.relative(this.root, target)}: ${code ?? (err as Error).message}`,
        code,
        {
          cause: err,
        },
      );
    } finally {
      this.#activeTemps.delete(temp);
    }
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Reads a file as UTF-8 through a reused buffer; falls back to readFileSync for large files. */
function readSmallFile(file: string, buf: Buffer): string {
  const fd = openSync(file, 'r');
  try {
    const n = readSync(fd, buf, 0, buf.length, 0);
    if (n < buf.length) return buf.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
  return readFileSync(file, 'utf8');
}

function journalGenerations(names: string[]): number[] {
  const out: number[] = [];
  for (const n of names) {
    const m = JOURNAL_PATTERN.exec(n);
    if (m) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

function isLegacyName(name: string): boolean {
  return name.endsWith(ENTRY_SUFFIX) && ID_PATTERN.test(name.slice(0, -ENTRY_SUFFIX.length));
}

/** The snapshot's header: its journal generation if it is a snapshot of this format. */
async function readSnapshotHeader(
  file: string,
): Promise<{ generation: number | undefined; bytes: number }> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    if (isMissing(err)) return { generation: undefined, bytes: 0 };
    throw err;
  }
  try {
    const buf = Buffer.alloc(256);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
    let generation: number | undefined;
    try {
      generation = nl < 0 ? undefined : snapshotGeneration(buf.toString('utf8', 0, nl));
    } catch {
      // damaged: loadEntries quarantines it
    }
    return { generation, bytes: (await handle.stat()).size };
  } finally {
    await handle.close();
  }
}

/** The generation in a header line; undefined for the format before the journal; throws otherwise. */
function snapshotGeneration(header: string): number | undefined {
  let h: unknown;
  try {
    h = JSON.parse(header);
  } catch {
    h = undefined;
  }
  const v = (h as Record<string, unknown> | undefined)?.[SNAPSHOT_KEY];
  const g = (h as Record<string, unknown> | undefined)?.journal;
  if (SNAPSHOT_VERSIONS_READ.includes(v as number) && Number.isSafeInteger(g) && (g as number) >= 0)
    return g as number;
  if (v === 1) return undefined;
  throw new Error('not a snapshot of a known format version');
}

/** The snapshot's header is not one of a known format (it is quarantined, not read). */
class BadSnapshotError extends Error {}

/** How much of a journal or snapshot is read at a time: the whole file would sit in memory. */
const READ_CHUNK_BYTES = 1024 * 1024;

/** Records counted by replayFile. */
export interface ReplayCount {
  records: number;
  /** `P` records, of the format before `Q`/`E`. */
  old: number;
}

/**
 * Applies the records of one file to `entries` in order, reading it a megabyte at a time: a
 * snapshot of a million entries is some 200 MB, and read in one piece it would stay in the
 * process's memory until a full collection. The file's `Q` records are its own (QueryTable): a
 * record never depends on another file. `header` takes the first line when
 * given (the snapshot's), and returns false to stop there. A bad last line without its newline is
 * a write a crash tore (never acknowledged): ignored. Any other bad record is reported. Returns
 * the count of records, or undefined when the file does not exist.
 */
export async function replayFile(
  file: string,
  name: string,
  into: ReplayTarget,
  header?: (line: string) => boolean,
  chunkBytes = READ_CHUNK_BYTES,
): Promise<ReplayCount | undefined> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
  const count: ReplayCount = { records: 0, old: 0 };
  const { entries, expired, bad } = into;
  // This file's own query table: a record never depends on another file.
  const ctx: ReadContext = {
    queries: new Map(),
    strings: into.strings,
    words: into.words,
    expiredBefore: into.expiredBefore,
  };
  let offset = 0; // of `buf` in the file, for messages
  try {
    // One buffer for the whole file: the unfinished line of each read moves to its front, and it
    // only grows for a line longer than itself.
    let buf = Buffer.allocUnsafe(chunkBytes);
    let filled = 0;
    let wantHeader = header !== undefined;
    for (;;) {
      if (filled === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, filled);
        buf = bigger;
      }
      const { bytesRead } = await handle.read(buf, filled, buf.length - filled, null);
      const eof = bytesRead === 0;
      const data = buf.subarray(0, filled + bytesRead);
      let start = 0;
      for (;;) {
        let end = data.indexOf(0x0a, start);
        const torn = end < 0;
        if (torn && !eof) break; // the rest comes with the next read
        if (torn) end = data.length;
        if (wantHeader) {
          if (torn) throw new BadSnapshotError('no header line');
          wantHeader = false;
          if (!header!(data.toString('utf8', start, end))) return count;
        } else if (start >= data.length) {
          break;
        } else {
          const r = parseRecord(data, start, end, ctx);
          if ('put' in r) {
            entries.set(r.put.id, r.put);
            if (data[start + 9] === 0x50) count.old++; // P
          } else if ('expired' in r) {
            // Every record of an id is expired alike (the expiry is in the id).
            expired.add(r.expired);
            if (data[start + 9] === 0x50) count.old++;
          } else if ('del' in r) {
            entries.delete(r.del);
            expired.delete(r.del);
          } else if ('query' in r) {
            // kept in ctx.queries
          } else if (!torn)
            bad.push({
              name,
              reason: `record at byte ${offset + start}: ${r.bad}`,
              bytes: Buffer.from(data.subarray(start, end + 1)),
            });
          count.records++;
        }
        start = end + 1;
      }
      if (eof) return count;
      offset += start;
      filled = data.copy(buf, 0, start);
    }
  } finally {
    await handle.close();
  }
}

/**
 * Reads everything on disk into one map, changing nothing (loadEntries then quarantines). Ids
 * expired at `expiredBefore` are listed apart, without their entries.
 */
export async function scanStore(root: string, expiredBefore?: number): Promise<StoreScan> {
  const entriesDir = path.join(root, 'entries');
  const names = await fs.readdir(entriesDir);
  const entries = new Map<string, Entry>();
  const bad: Bad[] = [];
  const scan: StoreScan = {
    entries,
    expired: new Set(),
    bad,
    strings: new Map(),
    words: new Map(),
    expiredBefore,
    snapshotGeneration: undefined,
    snapshotBytes: 0,
    journals: journalGenerations(names),
    legacyFiles: names.filter(isLegacyName),
    oldSnapshot: false,
    journalRecords: 0,
    oldRecords: 0,
  };
  for (const name of names) {
    if (name.startsWith(TEMP_PREFIX) || JOURNAL_PATTERN.test(name) || isLegacyName(name)) continue;
    const file = path.join(entriesDir, name);
    bad.push({
      name: path.join('entries', name),
      reason: 'not a journal-<N> or <id>.json file',
      file,
    });
  }

  const snapshotFile = path.join(root, SNAPSHOT);
  try {
    const counted = await replayFile(snapshotFile, SNAPSHOT, scan, (line) => {
      try {
        scan.snapshotGeneration = snapshotGeneration(line);
      } catch (err) {
        throw new BadSnapshotError((err as Error).message);
      }
      scan.oldSnapshot = scan.snapshotGeneration === undefined;
      return scan.snapshotGeneration !== undefined;
    });
    scan.oldRecords += counted?.old ?? 0;
    scan.snapshotBytes = (await fs.stat(snapshotFile).catch(() => ({ size: 0 }))).size;
  } catch (err) {
    // A snapshot of no known format is only a lost shortcut (the journals remain): quarantined.
    // Failing to read the disk is no such thing, and stops the start.
    if (!(err instanceof BadSnapshotError)) throw err;
    scan.snapshotGeneration = undefined;
    bad.push({ name: SNAPSHOT, reason: err.message, file: snapshotFile });
  }

  // Entry files of the format before the journal: the truth only where no snapshot of this
  // format exists yet (the first start after an upgrade). Otherwise a compaction already holds
  // them and they are leftovers it did not get to delete.
  if (scan.snapshotGeneration === undefined) {
    const buf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    for (const name of scan.legacyFiles) {
      const file = path.join(entriesDir, name);
      try {
        const entry = decodeEntry(readSmallFile(file, buf));
        if (entry.id !== name.slice(0, -ENTRY_SUFFIX.length))
          throw new Error(`record is for id ${entry.id}`);
        if (expiredBefore !== undefined && entry.expiresAt <= expiredBefore)
          scan.expired.add(entry.id);
        else entries.set(entry.id, entry);
      } catch (err) {
        if (!isMissing(err))
          bad.push({ name: path.join('entries', name), reason: (err as Error).message, file });
      }
    }
  }

  for (const generation of scan.journals) {
    if (scan.snapshotGeneration !== undefined && generation < scan.snapshotGeneration) continue;
    const name = Journal.fileName(generation);
    const records = await replayFile(path.join(entriesDir, name), path.join('entries', name), scan);
    scan.journalRecords += records?.records ?? 0;
    scan.oldRecords += records?.old ?? 0;
  }
  return scan;
}

/** Everything stored, by id, read without taking the lock (tests and tools; the service may run). */
export async function readStoredEntries(root: string): Promise<Map<string, Entry>> {
  return (await scanStore(root)).entries;
}
