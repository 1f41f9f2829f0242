import { setImmediate as nextTurn } from 'node:timers/promises';
import fs from 'node:fs/promises';
import type { Entry } from '../domain/entry.ts';
import { deleteRecord, entryRecord, RecordWriter } from './records.ts';
import { StoreWriteError } from './store.ts';

/** A put waits for its query's record, which depends on what the file it lands in already holds. */
interface Put {
  entry: Entry;
  record: string;
}

interface Batch {
  /** Delete records, and puts whose `Q` record is decided at flush time. */
  records: Array<string | Put>;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody may await a batch whose every caller went away; never an unhandled rejection.
  promise.catch(() => {});
  return { records: [], promise, resolve, reject };
}

/**
 * An append-only file of records with group commit: records appended while a write is on its way
 * to the disk wait, and go together in the next write with one fdatasync. Every append resolves
 * only once its record is durable, so a caller may hand out an id as soon as it resolves; with
 * many callers at once, they share the cost of one flush instead of paying one each.
 *
 * Records are in the format of records.ts. A query's `Q` record goes into a file before the first
 * entry of that query that needs it, decided when a batch is written rather than when it is
 * appended: only then is it known which file the batch lands in (a failed write moves on to a new
 * one, and so does a path that was deleted under the service), and a record must never depend on
 * one in another file.
 *
 * Files are `<dir>/journal-<generation>`. A new generation starts at every start (never append
 * after a previous run's possibly torn tail), after a failed write (same reason) and at rotate()
 * (a snapshot is about to cover everything before it).
 */
export class Journal {
  readonly #dir: string;
  readonly #fsyncDir: (dir: string) => Promise<void>;
  #generation: number;
  #handle: fs.FileHandle | undefined;
  #inode = 0;
  /** What the open file holds of each query (see RecordWriter); reset with every new file. */
  readonly #writer = new RecordWriter();
  /** The batch collecting records; closed when its flush starts. */
  #open: Batch | undefined;
  /** Every flush and rotation, one after another. */
  #chain: Promise<unknown> = Promise.resolve();
  /** Bytes appended since the last rotation (a hint for when to compact). */
  bytes = 0;
  flushes = 0;

  constructor(dir: string, generation: number, fsyncDir: (dir: string) => Promise<void>) {
    this.#dir = dir;
    this.#generation = generation;
    this.#fsyncDir = fsyncDir;
  }

  get generation(): number {
    return this.#generation;
  }

  static fileName(generation: number): string {
    return `journal-${generation}`;
  }

  /** Resolves once the entry is durable; rejects with StoreWriteError. */
  put(entry: Entry): Promise<void> {
    // Serialised now: the record is the entry as of this call.
    return this.#append({ entry, record: entryRecord(entry) });
  }

  /** Resolves once the delete is durable; rejects with StoreWriteError. */
  delete(id: string): Promise<void> {
    return this.#append(deleteRecord(id));
  }

  #append(records: string | Put): Promise<void> {
    let batch = this.#open;
    if (!batch) {
      const b = (batch = this.#open = newBatch());
      // One event-loop turn first: requests read in the same turn share this flush.
      this.#chain = this.#chain.then(async () => {
        await nextTurn();
        if (this.#open === b) this.#open = undefined;
        await this.#flush(b);
      });
    }
    batch.records.push(records);
    return batch.promise;
  }

  /**
   * Starts a new generation once everything appended so far is written, and returns its number:
   * a snapshot of the entries as they are after this call, tagged with it, plus the journals from
   * it on, is the whole store.
   */
  rotate(): Promise<number> {
    this.#open = undefined; // records appended from now on go after the rotation
    const rotated = this.#chain.then(async () => {
      await this.#closeHandle();
      this.bytes = 0;
      return ++this.#generation;
    });
    this.#chain = rotated.catch(() => {});
    return rotated;
  }

  /** Waits for every write queued so far, then closes the file. */
  async close(): Promise<void> {
    this.#open = undefined;
    await this.#chain.catch(() => {});
    await this.#closeHandle();
  }

  async #flush(batch: Batch): Promise<void> {
    const file = `${this.#dir}/${Journal.fileName(this.#generation)}`;
    try {
      const handle = await this.#file(file);
      let data = '';
      for (const r of batch.records)
        data += typeof r === 'string' ? r : this.#writer.before(r.entry) + r.record;
      await handle.writeFile(data);
      await handle.datasync();
      this.bytes += data.length;
      this.flushes++;
      batch.resolve();
    } catch (err) {
      // The file may now end in a torn record: the next write goes to a new one.
      await this.#closeHandle();
      this.#generation++;
      const code = (err as NodeJS.ErrnoException).code;
      batch.reject(
        new StoreWriteError(
          `could not write entries/${Journal.fileName(this.#generation - 1)}: ${code ?? (err as Error).message}`,
          code,
          { cause: err },
        ),
      );
    }
  }

  /**
   * The open journal file, (re)created if needed. Checked against the path on every flush: if
   * CACHE_PATH or entries/ was deleted or replaced under the running service, appending to the
   * old (unlinked) file would report records durable that no restart could find.
   */
  async #file(file: string): Promise<fs.FileHandle> {
    if (this.#handle) {
      const st = await fs.stat(file).catch(() => undefined);
      if (st?.ino === this.#inode) return this.#handle;
      await this.#closeHandle();
    }
    const handle = await fs.open(file, 'a', 0o644);
    try {
      this.#inode = (await handle.stat()).ino;
      // The new file's name must be durable before any record in it is reported durable.
      await this.#fsyncDir(this.#dir);
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
    this.#handle = handle;
    this.#writer.reset(); // a new file holds no query records yet
    return handle;
  }

  async #closeHandle(): Promise<void> {
    const h = this.#handle;
    this.#handle = undefined;
    await h?.close().catch(() => {});
  }
}
