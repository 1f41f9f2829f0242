import type { FastifyBaseLogger } from 'fastify';
import type { Store } from '../store/store.ts';
import { bytesDigest } from '../domain/hash.ts';

/**
 * Image bytes by digest: a byte-bounded LRU in memory in front of the store. Bytes read from the
 * store are checked against their digest before they are served or cached, so a damaged file is
 * quarantined instead of being served as someone's chart.
 */
export class BlobCache {
  readonly #memory = new Map<string, Buffer>();
  readonly #loading = new Map<string, Promise<Buffer | undefined>>();
  readonly #ops = new Map<string, Promise<void>>();
  #memoryBytes = 0;

  constructor(
    private readonly store: Store,
    private readonly maxMemoryBytes: number,
    private readonly log: FastifyBaseLogger,
    private readonly onMemoryChange: (bytes: number) => void = () => {},
  ) {}

  get memoryBytes(): number {
    return this.#memoryBytes;
  }

  /** Fast path for hot GETs: no promise, no I/O. */
  peek(digest: string): Buffer | undefined {
    const hit = this.#memory.get(digest);
    if (hit) {
      // Map keeps insertion order: re-inserting marks it most recently used.
      this.#memory.delete(digest);
      this.#memory.set(digest, hit);
    }
    return hit;
  }

  get(digest: string): Promise<Buffer | undefined> {
    const hit = this.peek(digest);
    if (hit) return Promise.resolve(hit);
    let loading = this.#loading.get(digest);
    if (!loading) {
      loading = this.#load(digest).finally(() => this.#loading.delete(digest));
      this.#loading.set(digest, loading);
    }
    return loading;
  }

  async #load(digest: string): Promise<Buffer | undefined> {
    const bytes = await this.store.getBlob(digest);
    if (!bytes) return undefined;
    if (bytesDigest(bytes) !== digest) {
      this.log.warn({ digest }, 'image file does not match its digest; quarantined');
      await this.store.quarantineBlob(digest, 'content does not match digest').catch(() => {});
      return undefined;
    }
    this.#remember(digest, bytes);
    return bytes;
  }

  async put(digest: string, bytes: Buffer): Promise<void> {
    await this.#serialize(digest, () => this.store.putBlob(digest, bytes));
    this.#remember(digest, bytes);
  }

  async delete(digest: string): Promise<void> {
    this.#forget(digest);
    await this.#serialize(digest, () => this.store.deleteBlob(digest));
  }

  /**
   * Puts and deletes of one digest run in order. Otherwise a fetch that produced the very bytes
   * maintenance is deleting could see the old file, skip its write, and lose the file to the rm.
   */
  #serialize(digest: string, op: () => Promise<void>): Promise<void> {
    const run = (this.#ops.get(digest) ?? Promise.resolve()).then(op, op);
    this.#ops.set(digest, run);
    void run.then(
      () => this.#ops.get(digest) === run && this.#ops.delete(digest),
      () => this.#ops.get(digest) === run && this.#ops.delete(digest),
    );
    return run;
  }

  #remember(digest: string, bytes: Buffer): void {
    // One image may not take more than a quarter of the budget, so a few big PDFs cannot flush it.
    if (bytes.length > this.maxMemoryBytes / 4 || this.#memory.has(digest)) return;
    this.#memory.set(digest, bytes);
    this.#memoryBytes += bytes.length;
    for (const [old, buf] of this.#memory) {
      if (this.#memoryBytes <= this.maxMemoryBytes) break;
      this.#memory.delete(old);
      this.#memoryBytes -= buf.length;
    }
    this.onMemoryChange(this.#memoryBytes);
  }

  #forget(digest: string): void {
    const buf = this.#memory.get(digest);
    if (!buf) return;
    this.#memory.delete(digest);
    this.#memoryBytes -= buf.length;
    this.onMemoryChange(this.#memoryBytes);
  }
}
