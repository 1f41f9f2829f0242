export type WaitOutcome = 'ready' | 'timeout' | 'aborted';

/**
 * GETs waiting for a pending id. Each waiter is woken by an event (the fetch finishing), by its
 * own timer, or by its client going away; whichever comes first removes the other two, so nothing
 * is left behind by thousands of impatient clients.
 */
export class Waiters {
  readonly #byId = new Map<string, Set<(outcome: WaitOutcome) => void>>();
  #count = 0;

  constructor(private readonly onCountChange: (count: number) => void = () => {}) {}

  get count(): number {
    return this.#count;
  }

  wait(id: string, timeoutMs: number, signal?: AbortSignal): Promise<WaitOutcome> {
    if (signal?.aborted) return Promise.resolve('aborted');
    return new Promise<WaitOutcome>((resolve) => {
      let set = this.#byId.get(id);
      if (!set) this.#byId.set(id, (set = new Set()));
      const listeners = set;
      const finish = (outcome: WaitOutcome): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (listeners.delete(finish)) {
          this.#count--;
          this.onCountChange(this.#count);
        }
        if (listeners.size === 0 && this.#byId.get(id) === listeners) this.#byId.delete(id);
        resolve(outcome);
      };
      const onAbort = (): void => finish('aborted');
      const timer = setTimeout(finish, timeoutMs, 'timeout');
      signal?.addEventListener('abort', onAbort, { once: true });
      listeners.add(finish);
      this.#count++;
      this.onCountChange(this.#count);
    });
  }

  /** Wakes every waiter of `id`. */
  notify(id: string): void {
    const set = this.#byId.get(id);
    if (!set) return;
    for (const finish of [...set]) finish('ready');
  }

  /** Wakes everyone (shutdown): they re-check and answer with whatever state they find. */
  notifyAll(): void {
    for (const id of [...this.#byId.keys()]) this.notify(id);
  }

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  /** Ids with at least one waiter. */
  waitingIds(): string[] {
    return [...this.#byId.keys()];
  }

  /** Waiting ids of one query (an id starts with its query hash). */
  idsOf(hash: string): string[] {
    const out: string[] = [];
    for (const id of this.#byId.keys()) if (id.startsWith(hash)) out.push(id);
    return out;
  }

  /** Number of ids with at least one waiter (for leak checks). */
  get idCount(): number {
    return this.#byId.size;
  }
}
