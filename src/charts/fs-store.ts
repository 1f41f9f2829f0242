import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { StoreWriteError } from '../store/store.ts';
import {
  decodeDefinition,
  decodeState,
  emptyState,
  encodeDefinition,
  encodeState,
  isChartName,
  type ChartDefinition,
  type ChartState,
  type StoredChart,
} from './chart.ts';
import type { ChartPage, ChartStore, PutResult } from './store.ts';

const TEMP_PREFIX = '.tmp-';
const FILE_PREFIX = 'chart-';
const FILE_SUFFIX = '.json';

export interface FsChartStoreOptions {
  /** Called for each unreadable chart file moved aside at open. */
  onQuarantine?: (file: string, reason: string, movedTo: string) => void;
}

/**
 * Charts under `<CACHE_PATH>/charts/`, one file per chart: `chart-<name>.json` holding two JSON
 * lines, the definition and the state. The `chart-` prefix keeps every name (even `.` or `..` or
 * `.tmp-x`) an ordinary file name that cannot collide with temp files. Every write goes to a temp
 * file that is fsynced, renamed over the target, and then the directory is fsynced, so a crash
 * leaves the old or the new chart, never a torn one.
 *
 * One process owns a CACHE_PATH, so the in-memory map is the truth while it runs and locks are
 * in-process; the files are the truth across restarts.
 */
export class FsChartStore implements ChartStore {
  readonly #dir: string;
  readonly #quarantine: string;
  readonly #charts = new Map<string, StoredChart>();
  /** Sorted names, rebuilt lazily after a create or delete (listing is rare, writes are rarer). */
  #sorted: string[] | undefined;
  readonly #writes = new Map<string, Promise<unknown>>();
  readonly #locks = new Map<string, { token: string; until: number }>();
  readonly #opts: FsChartStoreOptions;

  constructor(cachePath: string, opts: FsChartStoreOptions = {}) {
    this.#dir = path.join(cachePath, 'charts');
    this.#quarantine = path.join(cachePath, 'quarantine');
    this.#opts = opts;
  }

  async open(): Promise<void> {
    await fs.mkdir(this.#dir, { recursive: true });
    for (const file of await fs.readdir(this.#dir)) {
      const full = path.join(this.#dir, file);
      // Nobody else writes here: a temp file is what an interrupted write left behind.
      if (file.startsWith(TEMP_PREFIX)) {
        await fs.rm(full, { force: true });
        continue;
      }
      try {
        if (!file.startsWith(FILE_PREFIX) || !file.endsWith(FILE_SUFFIX))
          throw new Error('file name is not chart-<name>.json');
        const name = file.slice(FILE_PREFIX.length, -FILE_SUFFIX.length);
        const text = await fs.readFile(full, 'utf8');
        const nl = text.indexOf('\n');
        if (nl < 0) throw new Error('truncated: no state line');
        const definition = decodeDefinition(text.slice(0, nl));
        if (definition.name !== name) throw new Error(`record is for chart ${definition.name}`);
        let state = decodeState(text.slice(nl + 1));
        if (state.generation !== definition.generation) state = emptyState(definition.generation);
        this.#charts.set(name, { definition, state });
      } catch (err) {
        await fs.mkdir(this.#quarantine, { recursive: true });
        const movedTo = path.join(this.#quarantine, `${file}.${Date.now()}`);
        await fs.rename(full, movedTo);
        this.#opts.onQuarantine?.(path.join('charts', file), (err as Error).message, movedTo);
      }
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#writes.values()]);
  }

  async get(name: string): Promise<StoredChart | undefined> {
    this.#file(name); // validates the name, as every other backend does
    return this.#charts.get(name);
  }

  async list(after: string | undefined, limit: number): Promise<ChartPage> {
    this.#sorted ??= [...this.#charts.keys()].sort(byteOrder);
    const names = this.#sorted;
    let start = 0;
    if (after !== undefined) {
      // First name > after (binary search).
      let lo = 0;
      let hi = names.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (byteOrder(names[mid]!, after) <= 0) lo = mid + 1;
        else hi = mid;
      }
      start = lo;
    }
    const page = names.slice(start, start + limit);
    const charts = page.map((n) => this.#charts.get(n)).filter((c) => c !== undefined);
    const more = start + limit < names.length;
    return { charts, total: names.length, ...(more ? { next: page.at(-1) } : {}) };
  }

  async count(): Promise<number> {
    return this.#charts.size;
  }

  put(definition: ChartDefinition, maxCount: number): Promise<PutResult> {
    const { name } = definition;
    return this.#serialize(name, async () => {
      const exists = this.#charts.has(name);
      if (!exists && this.#charts.size >= maxCount) return 'limit';
      const chart = { definition, state: emptyState(definition.generation) };
      await this.#write(name, chart);
      this.#charts.set(name, chart);
      if (!exists) this.#sorted = undefined;
      return exists ? 'replaced' : 'created';
    });
  }

  delete(name: string): Promise<boolean> {
    return this.#serialize(name, async () => {
      if (!this.#charts.has(name)) return false;
      try {
        await fs.rm(this.#file(name), { force: true });
        await syncDir(this.#dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new StoreWriteError(`could not delete chart ${name}: ${code ?? err}`, code, {
          cause: err,
        });
      }
      this.#charts.delete(name);
      this.#sorted = undefined;
      return true;
    });
  }

  putState(name: string, state: ChartState): Promise<boolean> {
    return this.#serialize(name, async () => {
      const current = this.#charts.get(name);
      if (current?.definition.generation !== state.generation) return false;
      const chart = { definition: current.definition, state };
      await this.#write(name, chart);
      this.#charts.set(name, chart);
      return true;
    });
  }

  async lock(name: string, ttlMs: number): Promise<string | undefined> {
    const now = Date.now();
    const held = this.#locks.get(name);
    if (held && held.until > now) return undefined;
    const token = randomBytes(8).toString('hex');
    this.#locks.set(name, { token, until: now + ttlMs });
    return token;
  }

  async unlock(name: string, token: string): Promise<void> {
    if (this.#locks.get(name)?.token === token) this.#locks.delete(name);
  }

  #file(name: string): string {
    // Names are validated by the routes; checked again so the store is safe on its own.
    if (!isChartName(name)) throw new RangeError(`invalid chart name ${JSON.stringify(name)}`);
    return path.join(this.#dir, `${FILE_PREFIX}${name}${FILE_SUFFIX}`);
  }

  /** Operations on one chart run one after another, so a slow write never lands after a newer one. */
  #serialize<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#writes.get(name) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    this.#writes.set(name, run);
    void run.then(
      () => this.#writes.get(name) === run && this.#writes.delete(name),
      () => this.#writes.get(name) === run && this.#writes.delete(name),
    );
    return run;
  }

  async #write(name: string, chart: StoredChart): Promise<void> {
    const target = this.#file(name);
    const temp = path.join(this.#dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    let handle: fs.FileHandle | undefined;
    try {
      handle = await fs.open(temp, 'w', 0o644);
      await handle.writeFile(
        `${encodeDefinition(chart.definition)}\n${encodeState(chart.state)}\n`,
      );
      await handle.sync();
      await handle.close();
      handle = undefined;
      await fs.rename(temp, target);
      await syncDir(this.#dir);
    } catch (err) {
      await handle?.close().catch(() => {});
      await fs.rm(temp, { force: true }).catch(() => {});
      const code = (err as NodeJS.ErrnoException).code;
      throw new StoreWriteError(
        `could not write chart ${name}: ${code ?? (err as Error).message}`,
        code,
        { cause: err },
      );
    }
  }
}

/** Names are ASCII, so code-unit order is byte order (what Redis uses for the same listing). */
export function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Makes a rename or unlink in `dir` durable. */
async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
