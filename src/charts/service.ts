import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { FastifyBaseLogger } from 'fastify';
import type { ImageCache } from '../cache/image-cache.ts';
import type { Config } from '../config.ts';
import type { ImageEntry } from '../domain/entry.ts';
import { AppError, StorageError } from '../errors.ts';
import { StoreWriteError } from '../store/store.ts';
import {
  dueTime,
  refreshTtl,
  retryDelayMs,
  type ChartDefinition,
  type ChartFailure,
  type ChartState,
  type StoredChart,
} from './chart.ts';
import type { ChartMetrics, RefreshOutcome } from './metrics.ts';
import type { ChartPage, ChartStore } from './store.ts';

/** The part of the image cache charts use: the same public API as POST /requests and GET /image. */
export type ChartImageSource = Pick<
  ImageCache,
  'request' | 'lookup' | 'lookupHot' | 'waitFor' | 'closing'
>;

/** How often a request waiting for another replica's refresh looks at the shared state. */
const REMOTE_POLL_MS = 250;

export type ChartImageResult =
  | {
      kind: 'image';
      chart: StoredChart;
      entry: ImageEntry;
      bytes: Buffer;
      /** Past its refresh time (a refresh is running, due, or backing off after a failure). */
      stale: boolean;
      /** Epoch ms when a client should ask again: the due time, or the next retry of a failing chart. */
      nextAt: number;
    }
  | { kind: 'error'; chart: StoredChart; error: ChartFailure; retryAt?: number }
  | { kind: 'pending' }
  | { kind: 'closing' }
  | { kind: 'aborted' };

type RefreshResult = RefreshOutcome | 'locked' | 'unneeded' | 'closing' | 'gone';

export interface ChartServiceDeps {
  config: Pick<Config, 'maxTtl' | 'reuseWindow' | 'entryWaitTimeoutMs' | 'charts'>;
  cache: ChartImageSource;
  store: ChartStore;
  log: FastifyBaseLogger;
  metrics: ChartMetrics;
  now?: () => number;
}

export const chartNotFound = (name: string): AppError =>
  new AppError(
    404,
    'Not found',
    `No chart named ${JSON.stringify(name)}. PUT /charts/${name} with {"api_query": {…}, "refresh": seconds} to define it; GET /charts lists the charts.`,
    ['path', 'name'],
  );

/**
 * Named charts: definitions, and the refresh-on-demand logic (stale-while-revalidate,
 * stale-if-error, backoff). A refresh is an ordinary `cache.request()` of the chart's query, so it
 * follows the same sharing rules, limits and bytes as a POST; nothing runs on a timer, so a chart
 * nobody requests costs nothing.
 */
export class ChartService {
  readonly #cache: ChartImageSource;
  readonly #store: ChartStore;
  readonly #log: FastifyBaseLogger;
  readonly #metrics: ChartMetrics;
  readonly #config: ChartServiceDeps['config'];
  readonly #now: () => number;
  /** Refreshes this process runs, by chart name: concurrent requests join the one running. */
  readonly #refreshing = new Map<string, Promise<RefreshResult>>();

  constructor({ config, cache, store, log, metrics, now = Date.now }: ChartServiceDeps) {
    this.#config = config;
    this.#cache = cache;
    this.#store = store;
    this.#log = log;
    this.#metrics = metrics;
    this.#now = now;
  }

  get store(): ChartStore {
    return this.#store;
  }

  /** Creates or replaces a chart; a replaced chart starts over (no image, no errors). */
  async define(
    name: string,
    query: Record<string, unknown>,
    refresh: number,
  ): Promise<{ created: boolean; chart: StoredChart }> {
    const now = this.#now();
    const existing = await this.#store.get(name);
    const definition: ChartDefinition = {
      name,
      query,
      refresh,
      createdAt: existing?.definition.createdAt ?? now,
      updatedAt: now,
      generation: randomBytes(8).toString('hex'),
    };
    const result = await this.#store
      .put(definition, this.#config.charts.maxCount)
      .catch((err: unknown) => {
        if (!(err instanceof StoreWriteError)) throw err;
        throw new StorageError(
          `The chart could not be saved (${err.code ?? err.message}). Check the cache directory${err.code === 'ENOSPC' ? ' (the disk is full)' : ''}, then PUT it again.`,
          { cause: err },
        );
      });
    if (result === 'limit') {
      throw new AppError(
        409,
        'Too many charts',
        `${this.#config.charts.maxCount} charts are defined already (CHART_MAX_COUNT). DELETE /charts/{name} the ones no longer used, or raise CHART_MAX_COUNT.`,
        ['path', 'name'],
      );
    }
    return {
      created: result === 'created',
      chart: { definition, state: { generation: definition.generation, failures: 0 } },
    };
  }

  async get(name: string): Promise<StoredChart> {
    const chart = await this.#store.get(name);
    if (!chart) throw chartNotFound(name);
    return chart;
  }

  list(after: string | undefined, limit: number): Promise<ChartPage> {
    return this.#store.list(after, limit);
  }

  /** Charts defined in all. */
  count(): Promise<number> {
    return this.#store.count();
  }

  async remove(name: string): Promise<void> {
    const deleted = await this.#store.delete(name).catch((err: unknown) => {
      if (!(err instanceof StoreWriteError)) throw err;
      throw new StorageError(
        `The chart could not be deleted (${err.code ?? err.message}). Check the cache directory, then DELETE it again.`,
        { cause: err },
      );
    });
    if (!deleted) throw chartNotFound(name);
  }

  /** True while this process runs a refresh of the chart. */
  isRefreshing(name: string): boolean {
    return this.#refreshing.has(name);
  }

  /**
   * The image to serve for a chart right now. A fresh image is served as is; a stale one is served
   * at once and starts one background refresh (unless a failing chart is backing off); with no image
   * the request waits for a refresh like GET /image/{id} waits for a pending id.
   */
  async image(name: string, signal?: AbortSignal): Promise<ChartImageResult> {
    let chart = await this.get(name);
    const found = await this.#currentImage(chart);
    if (found) {
      const now = this.#now();
      const { state } = chart;
      const dueAt = state.dueAt ?? 0;
      const stale = now >= dueAt;
      const backingOff = state.retryAt !== undefined && state.retryAt > now;
      if (stale && !backingOff) void this.#refresh(name);
      if (stale)
        this.#metrics.staleServes.inc({ reason: state.lastError ? 'error' : 'revalidating' });
      const nextAt = !stale ? dueAt : backingOff ? state.retryAt! : now;
      return { kind: 'image', chart, entry: found.entry, bytes: found.bytes, stale, nextAt };
    }

    // No image to serve: a failing chart answers with its last error until its retry time.
    const failed = backoffError(chart, this.#now());
    if (failed) return failed;

    const deadline = this.#now() + this.#config.entryWaitTimeoutMs;
    const result = await this.#waitForRefresh(chart, deadline, signal);
    if (result === 'aborted') return { kind: 'aborted' };
    if (result === 'closing' || this.#cache.closing) return { kind: 'closing' };
    chart = await this.get(name);
    const after = await this.#currentImage(chart);
    if (after) {
      const dueAt = chart.state.dueAt ?? 0;
      return {
        kind: 'image',
        chart,
        entry: after.entry,
        bytes: after.bytes,
        stale: this.#now() >= dueAt,
        nextAt: Math.max(dueAt, this.#now()),
      };
    }
    if (chart.state.lastError)
      return {
        kind: 'error',
        chart,
        error: chart.state.lastError,
        ...(chart.state.retryAt === undefined ? {} : { retryAt: chart.state.retryAt }),
      };
    return { kind: 'pending' };
  }

  /** Starts a refresh, or joins the one this process already runs for the chart. */
  #refresh(name: string): Promise<RefreshResult> {
    let running = this.#refreshing.get(name);
    if (!running) {
      running = this.#runRefresh(name)
        .catch((err: unknown) => {
          this.#log.error({ chart: name, err }, 'chart refresh failed unexpectedly');
          return 'error' as const;
        })
        .finally(() => this.#refreshing.delete(name));
      this.#refreshing.set(name, running);
    }
    return running;
  }

  /**
   * Waits until a refresh of the chart has finished, here or (Redis mode) on another replica,
   * the deadline passes or the client goes away.
   */
  async #waitForRefresh(
    chart: StoredChart,
    deadline: number,
    signal?: AbortSignal,
  ): Promise<RefreshResult | 'aborted' | 'timeout'> {
    const name = chart.definition.name;
    const before = chart.state.lastAttemptAt;
    for (;;) {
      const remaining = deadline - this.#now();
      if (remaining <= 0) return 'timeout';
      const result = await raceAbort(this.#refresh(name), remaining, signal);
      // A refresh this request joined late gave up waiting, but its fetch goes on: wait on with a
      // new refresh, which shares that fetch, until this request's own deadline.
      if (result === 'timeout' && this.#now() < deadline && !this.#cache.closing) continue;
      if (result !== 'locked') return result;
      // Another replica holds the refresh lock: watch the shared state until its refresh lands.
      // (Polling, not pub/sub: a message lost on reconnect would leave this request hanging.)
      const waited = await raceAbort(
        delay(REMOTE_POLL_MS).then(() => 'tick' as const),
        remaining,
        signal,
      );
      if (waited !== 'tick') return waited;
      const now = await this.#store.get(name);
      if (!now || now.definition.generation !== chart.definition.generation) return 'gone';
      if (now.state.lastAttemptAt !== before) return 'unneeded';
    }
  }

  async #currentImage(
    chart: StoredChart,
  ): Promise<{ entry: ImageEntry; bytes: Buffer } | undefined> {
    const image = chart.state.image;
    if (!image) return undefined;
    const hot = this.#cache.lookupHot(image.imageId);
    if (hot) return hot;
    const found = await this.#cache.lookup(image.imageId);
    return found.kind === 'image' ? found : undefined;
  }

  /** One refresh of one chart across the cluster: lock, re-check, fetch through the cache, record. */
  async #runRefresh(name: string): Promise<RefreshResult> {
    const lockMs = 2 * this.#config.entryWaitTimeoutMs + 10_000;
    const token = await this.#store.lock(name, lockMs);
    if (!token) return 'locked';
    try {
      const chart = await this.#store.get(name);
      if (!chart) return 'gone';
      const { definition, state } = chart;
      const started = this.#now();
      // Another replica, or the refresh this one ran a moment ago, may have done the work already.
      if ((await this.#currentImage(chart)) && started < (state.dueAt ?? 0)) return 'unneeded';
      // A failing chart backs off; requests meanwhile get its last good image or its last error.
      if (state.retryAt !== undefined && started < state.retryAt) return 'unneeded';

      const settled = await this.#fetch(definition, started);
      if (settled.kind === 'closing') return 'closing';
      if (settled.kind === 'timeout') {
        this.#metrics.refreshes.inc({ outcome: 'timeout' });
        this.#log.warn({ chart: name }, 'chart refresh still pending after ENTRY_WAIT_TIMEOUT');
        return 'timeout';
      }
      const finished = this.#now();
      let next: ChartState;
      let outcome: RefreshOutcome;
      if (settled.kind === 'image') {
        const { entry } = settled;
        next = {
          generation: definition.generation,
          image: {
            imageId: entry.id,
            digest: entry.digest,
            mime: entry.mime,
            fetchedAt: entry.fetchedAt,
          },
          dueAt: dueTime(entry.fetchedAt, definition.refresh, this.#config.reuseWindow),
          lastAttemptAt: finished,
          failures: 0,
        };
        outcome = settled.fetched ? 'fetched' : 'shared';
      } else {
        const failures = state.failures + 1;
        next = {
          ...state,
          lastAttemptAt: finished,
          lastError: { ...settled.error, at: finished },
          failures,
          retryAt: finished + retryDelayMs(definition.refresh, failures),
        };
        outcome = 'error';
      }
      this.#metrics.refreshes.inc({ outcome });
      if (!(await this.#store.putState(name, next))) {
        this.#log.info(
          { chart: name },
          'chart replaced or deleted during its refresh; result dropped',
        );
        return outcome;
      }
      // Logged once the state is stored: what a request sees from now on.
      if (next.lastError && outcome === 'error')
        this.#log.warn(
          {
            chart: name,
            status: next.lastError.status,
            type: next.lastError.type,
            failures: next.failures,
          },
          'chart refresh failed',
        );
      else
        this.#log.info({ chart: name, outcome, imageId: next.image?.imageId }, 'chart refreshed');
      return outcome;
    } finally {
      await this.#store
        .unlock(name, token)
        .catch((err: unknown) =>
          this.#log.warn(
            { chart: name, err: (err as Error).message },
            'could not release chart lock',
          ),
        );
    }
  }

  /**
   * Requests the chart's query like a POST would and waits for the id. Rule 1 may answer with a
   * longer-lived id whose image is itself too old (a long-ttl POST of the same query); then the
   * request is repeated with a ttl just past that id's, which rule 1 cannot satisfy, so the image
   * comes from a fetch in flight, a fresh reuse (REUSE_WINDOW), or a new fetch.
   */
  async #fetch(
    definition: ChartDefinition,
    started: number,
  ): Promise<
    | { kind: 'image'; entry: ImageEntry; fetched: boolean }
    | { kind: 'error'; error: Omit<ChartFailure, 'at'> }
    | { kind: 'timeout' }
    | { kind: 'closing' }
  > {
    const { maxTtl, reuseWindow, charts } = this.#config;
    let ttl = refreshTtl(definition.refresh, charts.graceSeconds, maxTtl);
    for (let attempt = 0; ; attempt++) {
      const { id, result } = await this.#cache.request(definition.query, ttl);
      const settled = await this.#settle(id);
      if (settled.kind !== 'image') return settled;
      const { entry } = settled;
      const tooOld = started >= dueTime(entry.fetchedAt, definition.refresh, reuseWindow);
      const longer = Math.ceil((entry.expiresAt - this.#now()) / 1000) + 1;
      if (result === 'hit' && tooOld && attempt === 0 && longer > ttl && longer <= maxTtl) {
        ttl = longer;
        continue;
      }
      return { kind: 'image', entry, fetched: result === 'miss' };
    }
  }

  async #settle(
    id: string,
  ): Promise<
    | { kind: 'image'; entry: ImageEntry }
    | { kind: 'error'; error: Omit<ChartFailure, 'at'> }
    | { kind: 'timeout' }
    | { kind: 'closing' }
  > {
    let found = await this.#cache.lookup(id);
    if (found.kind === 'pending') {
      await this.#cache.waitFor(id, this.#config.entryWaitTimeoutMs);
      if (this.#cache.closing) return { kind: 'closing' };
      found = await this.#cache.lookup(id);
    }
    switch (found.kind) {
      case 'image':
        return { kind: 'image', entry: found.entry };
      case 'pending':
        return { kind: 'timeout' };
      case 'error':
        return {
          kind: 'error',
          error: {
            status: found.entry.status,
            type: found.entry.errorType,
            message: found.entry.message,
          },
        };
      case 'missing':
        return {
          kind: 'error',
          error: {
            status: 500,
            type: 'Internal error',
            message: `The image of the refresh was ${found.reason} before it could be served; the next request retries.`,
          },
        };
    }
  }
}

function backoffError(chart: StoredChart, now: number): ChartImageResult | undefined {
  const { lastError, retryAt } = chart.state;
  if (!lastError || retryAt === undefined || retryAt <= now) return undefined;
  return { kind: 'error', chart, error: lastError, retryAt };
}

/** `promise`, or 'timeout' after `ms`, or 'aborted' when `signal` fires; leaves no timer behind. */
async function raceAbort<T>(
  promise: Promise<T>,
  ms: number,
  signal?: AbortSignal,
): Promise<T | 'timeout' | 'aborted'> {
  if (signal?.aborted) return 'aborted';
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await Promise.race([
      promise,
      delay(ms, 'timeout' as const, { signal: stop.signal }).catch(() => 'aborted' as const),
    ]);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    stop.abort();
  }
}
