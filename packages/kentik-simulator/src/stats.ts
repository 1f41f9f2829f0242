/**
 * Call counters of the simulator: what tests and benchmarks read to check how often the cache
 * really called "Kentik" and which image bytes it was given.
 */
import { bytesDigest } from './hash.ts';

export interface SimulatorStats {
  /** Every call to /query/topXchart, auth failures included. */
  total: number;
  /**
   * Answers by kind: HTTP status ("200", "400", "401", "429", "503"...) or, for answers that
   * are not a plain status, "hang", "reset", "malformed-json", "malformed-data-uri" and
   * "aborted" (the client left while the latency was running).
   */
  byStatus: Record<string, number>;
  /**
   * Per queryHash(body) (bodies that are JSON): calls, and the sha256 hex of the decoded image
   * bytes of each 200 with a valid image, in answer order.
   */
  byHash: Record<string, { calls: number; digests: string[] }>;
  /** Calls open right now (from arrival until the answer is sent or the connection closes). */
  inFlight: number;
  /** Most calls open at once since start or the last reset (hung calls count until closed). */
  maxConcurrent: number;
}

export class StatsRecorder {
  #total = 0;
  #byStatus = new Map<string, number>();
  #byHash = new Map<string, { calls: number; digests: string[] }>();
  #inFlight = 0;
  #maxConcurrent = 0;

  /** A call is open; call the returned function once when it is over. */
  enter(): () => void {
    this.#inFlight++;
    this.#maxConcurrent = Math.max(this.#maxConcurrent, this.#inFlight);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.#inFlight--;
    };
  }

  /** A call arrived (before auth); `hash` is queryHash(body) when the body is JSON. */
  call(hash: string | null): void {
    this.#total++;
    if (hash === null) return;
    const entry = this.#byHash.get(hash) ?? { calls: 0, digests: [] };
    entry.calls++;
    this.#byHash.set(hash, entry);
  }

  answer(kind: string | number): void {
    const key = String(kind);
    this.#byStatus.set(key, (this.#byStatus.get(key) ?? 0) + 1);
  }

  /** An image was served with 200 for this hash. */
  image(hash: string | null, bytes: Uint8Array): void {
    if (hash === null) return;
    const entry = this.#byHash.get(hash) ?? { calls: 0, digests: [] };
    entry.digests.push(bytesDigest(bytes));
    this.#byHash.set(hash, entry);
  }

  snapshot(): SimulatorStats {
    const byHash: SimulatorStats['byHash'] = {};
    for (const [k, v] of this.#byHash) byHash[k] = { calls: v.calls, digests: [...v.digests] };
    return {
      total: this.#total,
      byStatus: Object.fromEntries(this.#byStatus),
      byHash,
      inFlight: this.#inFlight,
      maxConcurrent: this.#maxConcurrent,
    };
  }

  reset(): void {
    this.#total = 0;
    this.#byStatus.clear();
    this.#byHash.clear();
    // Calls still open stay counted: they will leave later.
    this.#maxConcurrent = this.#inFlight;
  }
}
