import type { KentikClient } from '../kentik/client.ts';
import { AppError } from '../errors.ts';
import { parseId } from '../domain/ids.ts';

/** Upstream calls are counted per minute for this long: the status bar's "last minutes". */
export const UPSTREAM_WINDOW_MINUTES = 15;
/** Served counters of expired ids are dropped when the map has grown by this many since the last sweep. */
const SWEEP_EVERY = 10_000;

export interface UpstreamWindow {
  minutes: number;
  calls: number;
  errors: number;
  last_error?: { at: number; status: number; message: string };
}

/**
 * What this process has seen happen, for people looking at the dashboard: how often each id was
 * served and how Kentik fared in the last minutes. In memory and per process: a restart starts
 * from zero, which is fine for an at-a-glance view (Prometheus has the durable counters).
 */
export class Activity {
  readonly #served = new Map<string, number>();
  #sinceSweep = 0;
  /** [minute epoch, calls, errors], oldest first. */
  readonly #minutes: Array<[number, number, number]> = [];
  #lastError: UpstreamWindow['last_error'];
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Called once per successful GET /image (200 or 304). */
  served(id: string): void {
    this.#served.set(id, (this.#served.get(id) ?? 0) + 1);
    if (++this.#sinceSweep >= SWEEP_EVERY) this.#sweep();
  }

  servedCount(id: string): number {
    return this.#served.get(id) ?? 0;
  }

  /** One upstream fetch (all its retries) finished; `error` if it failed. */
  upstream(error?: { status: number; message: string }): void {
    const now = this.#now();
    const minute = Math.floor(now / 60_000);
    let last = this.#minutes.at(-1);
    if (!last || last[0] !== minute) this.#minutes.push((last = [minute, 0, 0]));
    while (this.#minutes.length > 0 && this.#minutes[0]![0] <= minute - UPSTREAM_WINDOW_MINUTES)
      this.#minutes.shift();
    last[1]++;
    if (error) {
      last[2]++;
      this.#lastError = { at: now, ...error };
    }
  }

  upstreamWindow(): UpstreamWindow {
    const minute = Math.floor(this.#now() / 60_000);
    let calls = 0;
    let errors = 0;
    for (const [m, c, e] of this.#minutes) {
      if (m <= minute - UPSTREAM_WINDOW_MINUTES) continue;
      calls += c;
      errors += e;
    }
    return {
      minutes: UPSTREAM_WINDOW_MINUTES,
      calls,
      errors,
      ...(this.#lastError ? { last_error: this.#lastError } : {}),
    };
  }

  /** Ids carry their expiry, so expired counters go without asking the cache. */
  #sweep(): void {
    this.#sinceSweep = 0;
    const now = this.#now();
    for (const id of this.#served.keys()) {
      const parsed = parseId(id);
      if (!parsed || parsed.expiresAt <= now) this.#served.delete(id);
    }
  }
}

/** Wraps a Kentik client so every fetch it finishes is recorded in `activity`. */
export function recordingClient(client: KentikClient, activity: Activity): KentikClient {
  return {
    async fetchChart(query, ctx) {
      try {
        const image = await client.fetchChart(query, ctx);
        activity.upstream();
        return image;
      } catch (err) {
        // Shutting down is not Kentik's fault.
        if (!ctx.signal?.aborted)
          activity.upstream({
            status: err instanceof AppError ? err.statusCode : 500,
            message: err instanceof Error ? err.message : String(err),
          });
        throw err;
      }
    },
    close: () => client.close(),
  };
}
