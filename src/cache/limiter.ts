/**
 * At most `limit` tasks run at once; the rest wait in FIFO order. Kentik rate-limits per account,
 * so a burst of new queries must queue here rather than fan out into a wall of 429s.
 *
 * The queue is a Set (insertion-ordered, O(1) delete): a waiter that gives up (its fetch aborted,
 * e.g. every queued fetch at shutdown) leaves in O(1), so aborting a queue of n is O(n), not O(n²).
 */
export class Limiter {
  #running = 0;
  readonly #queue = new Set<() => void>();

  constructor(
    readonly limit: number,
    private readonly onQueueChange: (queued: number) => void = () => {},
  ) {}

  get queued(): number {
    return this.#queue.size;
  }

  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#running >= this.limit) await this.#wait(signal);
    this.#running++;
    try {
      return await task();
    } finally {
      this.#running--;
      const next = this.#queue.values().next();
      if (!next.done) {
        this.#queue.delete(next.value);
        next.value();
      }
      this.onQueueChange(this.#queue.size);
    }
  }

  #wait(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const go = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        this.#queue.delete(go);
        this.onQueueChange(this.#queue.size);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.add(go);
      this.onQueueChange(this.#queue.size);
    });
  }
}
