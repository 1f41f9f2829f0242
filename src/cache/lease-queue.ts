import type { Lease } from '../coordination/coordinator.ts';

/**
 * Flights waiting for their turn to call Kentik, oldest first, as plain data: a lease each, no
 * promise, timer or abort signal. A burst of new queries can queue tens of thousands of fetches;
 * as suspended async functions each cost some forty small objects (~4 KB), and the garbage
 * collector walked them all at every young-generation collection (the unique-POST latency tail).
 * Only the few flights that may call Kentik now (KENTIK_API_CONCURRENCY) run as async code.
 */
export class LeaseQueue {
  #items: Array<Lease | undefined> = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(lease: Lease): void {
    this.#items.push(lease);
  }

  shift(): Lease | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const lease = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    // Drop the consumed front now and then: O(1) per shift on average, and no unbounded array.
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return lease;
  }

  /** Every queued lease, oldest first. */
  *[Symbol.iterator](): IterableIterator<Lease> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i]!;
  }

  /** Empties the queue, returning what it held, oldest first. */
  drain(): Lease[] {
    const out = this.#items.slice(this.#head) as Lease[];
    this.#items = [];
    this.#head = 0;
    return out;
  }
}
