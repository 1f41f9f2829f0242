/**
 * Image bytes by digest, in memory: a byte-bounded LRU in front of the coordinator's blob store.
 * Content-addressed bytes never change, so a copy held here is valid until the coordinator says
 * the digest is gone (forget) or the whole index was reset (clear).
 */
export class MemoryBlobs {
  readonly #memory = new Map<string, Buffer>();
  readonly #loading = new Map<string, Promise<Buffer | undefined>>();
  #memoryBytes = 0;

  constructor(
    private readonly maxMemoryBytes: number,
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

  /** From memory, or loaded once however many GETs ask at the same time. */
  get(digest: string, load: () => Promise<Buffer | undefined>): Promise<Buffer | undefined> {
    const hit = this.peek(digest);
    if (hit) return Promise.resolve(hit);
    let loading = this.#loading.get(digest);
    if (!loading) {
      loading = load()
        .then((bytes) => {
          if (bytes) this.remember(digest, bytes);
          return bytes;
        })
        .finally(() => this.#loading.delete(digest));
      this.#loading.set(digest, loading);
    }
    return loading;
  }

  remember(digest: string, bytes: Buffer): void {
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

  forget(digest: string): void {
    const buf = this.#memory.get(digest);
    if (!buf) return;
    this.#memory.delete(digest);
    this.#memoryBytes -= buf.length;
    this.onMemoryChange(this.#memoryBytes);
  }

  clear(): void {
    this.#memory.clear();
    this.#memoryBytes = 0;
    this.onMemoryChange(0);
  }
}
