export type WaitOutcome = 'ready' | 'timeout' | 'aborted';

/** What a wait listens to for its client going away (a ServerResponse). */
export interface ClosingEmitter {
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

/**
 * GETs waiting for a pending id. Each waiter is woken by an event (the fetch finishing), by its
 * own timer, or by its client going away; whichever comes first removes the other two, so nothing
 * is left behind by thousands of impatient clients.
 */
export class Waiters {
  readonly #byId = new Map<string, Set<(outcome: WaitOutcome) => void>>();
  #count = 0;
  #reporting = false;

  constructor(private readonly onCountChange: (count: number) => void = () => {}) {}

  /**
   * Reports the count once per burst: a fetch that settles wakes hundreds of waiters in one go, and
   * a gauge update each (prom-client's label handling) showed in the profile of that wake.
   */
  #countChanged(): void {
    if (this.#reporting) return;
    this.#reporting = true;
    queueMicrotask(() => {
      this.#reporting = false;
      this.onCountChange(this.#count);
    });
  }

  get count(): number {
    return this.#count;
  }

  /**
   * Waits until `id` is notified, `timeoutMs` passes, or `client` (the waiting GET's response)
   * emits 'close'. An emitter rather than an AbortSignal: a fan-in wakes hundreds of waiters in one
   * loop, and taking each one's EventTarget listener off was half of that loop's time.
   */
  wait(id: string, timeoutMs: number, client?: ClosingEmitter): Promise<WaitOutcome> {
    return new Promise<WaitOutcome>((resolve) => {
      let set = this.#byId.get(id);
      if (!set) this.#byId.set(id, (set = new Set()));
      const listeners = set;
      const finish = (outcome: WaitOutcome): void => {
        clearTimeout(timer);
        client?.off('close', onClose);
        if (listeners.delete(finish)) {
          this.#count--;
          this.#countChanged();
        }
        if (listeners.size === 0 && this.#byId.get(id) === listeners) this.#byId.delete(id);
        resolve(outcome);
      };
      const onClose = (): void => finish('aborted');
      const timer = setTimeout(finish, timeoutMs, 'timeout');
      client?.once('close', onClose);
      listeners.add(finish);
      this.#count++;
      this.#countChanged();
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
