/**
 * At most `limit` tasks run at once; the rest wait in FIFO order. Kentik rate-limits per account,
 * so a burst of new queries must queue here rather than fan out into a wall of 429s.
 */
export class Limiter {
  #running = 0;
  readonly #queue: Array<() => void> = [];

  constructor(
    readonly limit: number,
    private readonly onQueueChange: (queued: number) => void = () => {},
  ) {}

  get queued(): number {
    return this.#queue.length;
  }

  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await task();
    } finally {
      release();
    }
  }

  /** Waits for a slot; the returned function gives it back (once). */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.#running >= this.limit) await this.#wait(signal);
    this.#running++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#running--;
      this.#queue.shift()?.();
      this.onQueueChange(this.#queue.length);
    };
  }

  #wait(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const go = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.#queue.indexOf(go);
        if (i >= 0) this.#queue.splice(i, 1);
        this.onQueueChange(this.#queue.length);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(go);
      this.onQueueChange(this.#queue.length);
    });
  }
}
