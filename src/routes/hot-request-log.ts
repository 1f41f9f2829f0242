import type { FastifyBaseLogger } from 'fastify';

/** How often the hot path's requests are summarised in the log. */
export const HOT_LOG_INTERVAL_MS = 10_000;

/**
 * The request log of the hot image path (hot-image.ts): one `info` line per interval that had
 * requests, counting them by method and status with their mean and largest duration, instead of
 * one line per request (at 50,000 requests a second those lines would cost more CPU than the
 * answers, and flood the log with identical lines). Written at close too, so no request goes
 * uncounted. Every other request keeps its own line (the onResponse hook in app.ts).
 */
export class HotRequestLog {
  readonly #log: FastifyBaseLogger;
  readonly #timer: NodeJS.Timeout;
  #since = Date.now();
  #get200 = 0;
  #get304 = 0;
  #head200 = 0;
  #totalMs = 0;
  #maxMs = 0;

  constructor(log: FastifyBaseLogger, intervalMs = HOT_LOG_INTERVAL_MS) {
    this.#log = log;
    this.#timer = setInterval(() => this.flush(), intervalMs).unref();
  }

  add(method: string, status: 200 | 304, ms: number): void {
    if (status === 304) this.#get304++;
    else if (method === 'HEAD') this.#head200++;
    else this.#get200++;
    this.#totalMs += ms;
    if (ms > this.#maxMs) this.#maxMs = ms;
  }

  /** Writes the line for what was counted since the last one, if anything was. */
  flush(): void {
    const requests = this.#get200 + this.#get304 + this.#head200;
    const now = Date.now();
    if (requests > 0) {
      this.#log.info(
        {
          route: '/image/:id',
          requests,
          // Same shape as the per-request lines' method and statusCode, counted.
          byStatus: {
            ...(this.#get200 > 0 ? { 'GET 200': this.#get200 } : {}),
            ...(this.#get304 > 0 ? { 'GET 304': this.#get304 } : {}),
            ...(this.#head200 > 0 ? { 'HEAD 200': this.#head200 } : {}),
          },
          durationMs: {
            mean: Math.round((this.#totalMs / requests) * 1000) / 1000,
            max: Math.round(this.#maxMs * 1000) / 1000,
          },
          seconds: Math.round((now - this.#since) / 100) / 10,
        },
        'hot image requests',
      );
    }
    this.#since = now;
    this.#get200 = this.#get304 = this.#head200 = 0;
    this.#totalMs = this.#maxMs = 0;
  }

  /** Writes what is left and stops the timer. */
  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}
