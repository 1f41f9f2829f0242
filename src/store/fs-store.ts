import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readFileSync, readSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../domain/entry.ts';
import { decodeEntry, encodeEntry, ENTRY_FORMAT_VERSION } from '../domain/entry-codec.ts';
import { ID_PATTERN } from '../domain/ids.ts';
import { acquireDirectoryLock, type DirectoryLock } from './lock.ts';
import {
  StoreReadError,
  StoreWriteError,
  type LoadResult,
  type Quarantined,
  type Store,
} from './store.ts';

const TEMP_PREFIX = '.tmp-';
const ENTRY_SUFFIX = '.json';
const DIGEST_PATTERN = /^[0-9a-f]{64}$/;
const SNAPSHOT = 'index.snapshot';
const SNAPSHOT_HEADER = `{"kentik-image-cache-snapshot":${ENTRY_FORMAT_VERSION}}`;
/** Entries serialised between two writes (and event-loop turns) of the snapshot. */
const SNAPSHOT_SLICE = 2000;
/** Entry records are a few hundred bytes (pending ones carry a query of a few KB). */
const READ_BUFFER_BYTES = 64 * 1024;

const isMissing = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT';

/**
 * Layout under the root:
 *   entries/<id>.json   one small JSON record per id
 *   blobs/<sha256>      image bytes, content-addressed
 *   quarantine/         files that could not be read, moved aside for a human to look at
 * Every write goes to `.tmp-*` in the same directory, is fsynced, then renamed over the target, so a
 * crash leaves the old or the new file and at worst a stray temp file that maintenance removes.
 */
export class FsStore implements Store {
  readonly #entries: string;
  readonly #blobs: string;
  readonly #quarantine: string;
  /** Temp files being written right now: sweepTemporary must not delete these. */
  readonly #activeTemps = new Set<string>();
  #lock: DirectoryLock | undefined;

  constructor(readonly root: string) {
    this.#entries = path.join(root, 'entries');
    this.#blobs = path.join(root, 'blobs');
    this.#quarantine = path.join(root, 'quarantine');
  }

  /**
   * Creates the folders and takes the directory lock: a second process on the same CACHE_PATH would
   * delete this one's files as orphans, so it refuses to start instead (CachePathLockedError).
   */
  async open(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true });
    this.#lock ??= await acquireDirectoryLock(this.root);
    for (const dir of [this.#entries, this.#blobs, this.#quarantine])
      await fs.mkdir(dir, { recursive: true });
  }

  #entryPath(id: string): string {
    // Ids are validated by the caller too; this second check keeps the store safe on its own.
    if (!ID_PATTERN.test(id))
      throw new RangeError(`invalid entry id ${JSON.stringify(id.slice(0, 100))}`);
    return path.join(this.#entries, id + ENTRY_SUFFIX);
  }

  #blobPath(digest: string): string {
    if (!DIGEST_PATTERN.test(digest))
      throw new RangeError(`invalid blob digest ${JSON.stringify(digest.slice(0, 100))}`);
    return path.join(this.#blobs, digest);
  }

  /**
   * Reads every entry file synchronously: this runs once, before the service listens, and with
   * 100k entries a plain loop over open/read/close is several times faster than async reads,
   * which pay four thread-pool round trips per file.
   */
  async loadEntries(): Promise<LoadResult> {
    const names = await fs.readdir(this.#entries);
    const bad: Array<{ name: string; reason: string }> = [];
    const { entries, covered } = await this.#readSnapshot(new Set(names), bad);
    const buf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    for (const name of names) {
      if (name.startsWith(TEMP_PREFIX) || covered.has(name)) continue; // temp files: swept by maintenance
      try {
        const id = name.endsWith(ENTRY_SUFFIX) ? name.slice(0, -ENTRY_SUFFIX.length) : '';
        if (!ID_PATTERN.test(id)) throw new Error('file name is not <id>.json');
        const entry = decodeEntry(readSmallFile(path.join(this.#entries, name), buf));
        if (entry.id !== id) throw new Error(`record is for id ${entry.id}`);
        entries.push(entry);
      } catch (err) {
        if (!isMissing(err)) bad.push({ name, reason: (err as Error).message });
      }
    }
    const quarantined: Quarantined[] = [];
    for (const { name, reason } of bad) {
      const inRoot = name === SNAPSHOT;
      const movedTo = await this.#moveAside(
        path.join(inRoot ? this.root : this.#entries, name),
        name,
      );
      quarantined.push({ name: inRoot ? name : path.join('entries', name), reason, movedTo });
    }
    return { entries, quarantined };
  }

  /**
   * The snapshot lists finished (image and error) entries. Their files never change once written
   * (an id goes pending → finished once, then only gets deleted), so a snapshot line whose file
   * still exists is as good as the file, and reading one file replaces 100k small reads.
   * Pending entries and files newer than the snapshot are read from their own files. A snapshot
   * that cannot be read is quarantined and ignored: it is only a shortcut.
   */
  async #readSnapshot(
    names: Set<string>,
    bad: Array<{ name: string; reason: string }>,
  ): Promise<{ entries: Entry[]; covered: Set<string> }> {
    const entries: Entry[] = [];
    const covered = new Set<string>();
    let data: Buffer;
    try {
      data = await fs.readFile(path.join(this.root, SNAPSHOT));
    } catch (err) {
      if (isMissing(err)) return { entries, covered };
      throw err;
    }
    let start = data.indexOf(0x0a) + 1;
    if (start === 0 || data.toString('utf8', 0, start - 1) !== SNAPSHOT_HEADER) {
      bad.push({ name: SNAPSHOT, reason: 'not a snapshot of this format version' });
      return { entries, covered };
    }
    while (start < data.length) {
      let end = data.indexOf(0x0a, start);
      if (end < 0) end = data.length; // a torn last line fails to decode below and is skipped
      const line = data.toString('utf8', start, end);
      start = end + 1;
      let entry: Entry;
      try {
        entry = decodeEntry(line);
      } catch {
        continue; // that entry's own file is read instead
      }
      const name = entry.id + ENTRY_SUFFIX;
      if (entry.kind === 'pending' || !names.has(name) || covered.has(name)) continue;
      covered.add(name);
      entries.push(entry);
    }
    return { entries, covered };
  }

  /** Writes the snapshot in slices, so a large cache does not stall requests while it is written. */
  async checkpoint(all: Iterable<Entry>): Promise<void> {
    const temp = path.join(this.root, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    this.#activeTemps.add(temp);
    let handle: fs.FileHandle | undefined;
    try {
      handle = await fs.open(temp, 'w', 0o644);
      let chunk = SNAPSHOT_HEADER + '\n';
      let count = 0;
      for (const entry of all) {
        if (entry.kind === 'pending') continue;
        chunk += encodeEntry(entry) + '\n';
        if (++count % SNAPSHOT_SLICE === 0) {
          await handle.write(chunk);
          chunk = '';
        }
      }
      await handle.write(chunk);
      await handle.sync();
      await handle.close();
      handle = undefined;
      await fs.rename(temp, path.join(this.root, SNAPSHOT));
      await fsyncDir(this.root);
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

  async getEntry(id: string): Promise<Entry | undefined> {
    const file = this.#entryPath(id);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.#readError(file, err);
    }
    return decodeEntry(text);
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
    return this.#writeAtomic(this.#entries, this.#entryPath(entry.id), encodeEntry(entry));
  }

  async deleteEntry(id: string): Promise<void> {
    await fs.rm(this.#entryPath(id), { force: true });
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
