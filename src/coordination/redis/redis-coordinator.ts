import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../../config.ts';
import type { Entry, PendingEntry } from '../../domain/entry.ts';
import { decodeEntry, encodeEntry } from '../../domain/entry-codec.ts';
import { formatId, ID_PATTERN } from '../../domain/ids.ts';
import { summarizeQuery } from '../../domain/query-summary.ts';
import type { Metrics } from '../../metrics.ts';
import {
  CoordinatorUnavailableError,
  PendingCapError,
  matchesKind,
  PAGE_MAX_LIMIT,
  type Coordinator,
  type CoordinatorEvent,
  type Counts,
  type DecideInput,
  type Decision,
  type Lease,
  type MaintenanceReport,
  type OpenReport,
  type Outcome,
  type Page,
  type PageRequest,
  type SettleResult,
  type Slot,
} from '../coordinator.ts';
import { createRedisLink, RedisUnavailable, type LuaScript, type RedisLink } from './client.ts';
import * as S from './scripts.ts';

export interface RedisCoordinatorDeps {
  config: Pick<
    Config,
    'redisKeyPrefix' | 'reuseWindow' | 'flightLease' | 'kentikApiConcurrency'
  > & {
    redisUrl: Config['redisUrl'];
  };
  log: FastifyBaseLogger;
  metrics: Metrics;
}

const DIGEST = /^[0-9a-f]{64}$/;
/** How long open() waits for Redis before the process refuses to start. */
const OPEN_TIMEOUT_MS = 10_000;
/** How often the epoch key is checked, to notice a Redis that restarted empty or was flushed. */
const EPOCH_CHECK_MS = 2000;
/** Most flights taken over per scan. */
const CLAIM_MAX = 100;
/** Members a page may look at (skipping expired or other kinds) before it returns what it has. */
const PAGE_SCAN = 20_000;
/** Longest wait between two tries for an upstream slot (a release message usually comes first). */
const SLOT_POLL_MS = 250;
/** Ids trimmed from the indexes per maintenance script call (a few ms of Redis time). */
const MAINTAIN_MAX = 5000;

/**
 * The Redis coordinator: the shared truth for several replicas. Every cross-replica decision is
 * one Lua script (scripts.ts); pub/sub carries only query hashes (settled), digests and ids
 * (deleted) and hands-over, and is backed by the orchestrator's slow re-check, because messages
 * are lost while a connection is down.
 */
export class RedisCoordinator implements Coordinator {
  readonly backend = 'redis' as const;
  readonly shared = true;
  readonly #link: RedisLink;
  readonly #P: string;
  readonly #log: FastifyBaseLogger;
  readonly #metrics: Metrics;
  readonly #reuseMs: number;
  readonly #leaseMs: number;
  readonly #concurrency: number;
  readonly #listeners: Array<(e: CoordinatorEvent) => void> = [];
  readonly #instance = randomBytes(6).toString('hex');
  readonly #slotWaiters = new Set<() => void>();
  /** Hashes this process settled: their pub/sub echo is not news. */
  readonly #ownSettles = new Set<string>();
  #seq = 0;
  #epoch: string | undefined;
  #down = false;
  #epochTimer: NodeJS.Timeout | undefined;
  #lastError = '';

  constructor({ config, log, metrics }: RedisCoordinatorDeps) {
    if (!config.redisUrl) throw new Error('REDIS_URL is required with CACHE_BACKEND=redis');
    this.#P = config.redisKeyPrefix;
    this.#log = log;
    this.#metrics = metrics;
    this.#reuseMs = config.reuseWindow * 1000;
    this.#leaseMs = config.flightLease * 1000;
    this.#concurrency = config.kentikApiConcurrency;
    this.#link = createRedisLink(config.redisUrl, (message) => {
      // node-redis reports every failed reconnect: say it once per distinct message.
      if (message === this.#lastError) return;
      this.#lastError = message;
      log.warn({ err: message }, 'Redis connection error');
    });
  }

  async open(): Promise<OpenReport> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.#link.connect(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new RedisUnavailable(`no connection within ${OPEN_TIMEOUT_MS / 1000} s`)),
            OPEN_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (err) {
      await this.#link.close().catch(() => {});
      // No cause attached: the client's error objects hold its options, and so the URL.
      // eslint-disable-next-line preserve-caught-error
      throw new Error(
        `Cannot reach Redis (REDIS_URL): ${(err as Error).message}${this.#lastError ? ` (last error: ${this.#lastError})` : ''}. Check that Redis runs, that REDIS_URL points to it, and its password.`,
      );
    } finally {
      clearTimeout(timer);
    }
    await this.#link.subscribe(`${this.#P}ev`, (m) => this.#onMessage(m));
    this.#link.onState((up) => this.#onState(up));
    await this.#checkEpoch();
    this.#epochTimer = setInterval(() => void this.#checkEpoch().catch(() => {}), EPOCH_CHECK_MS);
    this.#epochTimer.unref();
    this.#log.info({ prefix: this.#P }, 'connected to Redis');
    return { loaded: 0, expired: 0, quarantined: 0 };
  }

  async decide({
    hash,
    query: parsed,
    queryJson: query,
    expiresAt,
    now,
    maxPending,
  }: DecideInput): Promise<Decision> {
    const summary = summarizeQuery(parsed);
    for (;;) {
      const id = formatId(hash, expiresAt);
      // Field order matters: the scripts read expiresAt and createdAt before anything else.
      const pending: PendingEntry = {
        id,
        hash,
        expiresAt,
        createdAt: now,
        summary,
        kind: 'pending',
        query,
      };
      const token = this.#newToken();
      const r = (await this.#eval(S.DECIDE, [
        hash,
        id,
        String(expiresAt),
        String(now),
        encodeEntry(pending),
        String(this.#reuseMs),
        String(this.#leaseMs),
        token,
        query,
        member(now, id),
        String(maxPending ?? 0),
      ])) as string[];
      switch (r[0]) {
        case 'taken':
          expiresAt++; // an id is unique per query and millisecond
          continue;
        case 'hit':
          return { result: 'hit', id: r[1]! };
        case 'shared':
          return { result: 'shared', id, entry: r[2] ? decodeEntry(r[2]) : pending };
        case 'miss':
          return { result: 'miss', id, entry: pending, lease: { hash, token, query, id } };
        case 'busy':
          throw new PendingCapError(Number(r[1]));
        default:
          throw new Error(`unexpected answer from the decide script: ${String(r[0])}`);
      }
    }
  }

  async getEntry(id: string): Promise<Entry | undefined> {
    if (!ID_PATTERN.test(id)) return undefined;
    const text = (await this.#cmd(['GET', `${this.#P}e:${id}`])) as string | null;
    if (text === null) return undefined;
    try {
      return decodeEntry(text);
    } catch (err) {
      this.#log.warn({ id, err: (err as Error).message }, 'unreadable entry in Redis; ignored');
      return undefined;
    }
  }

  async getEntries(ids: string[]): Promise<Array<Entry | undefined>> {
    const valid = ids.filter((id) => ID_PATTERN.test(id));
    if (valid.length === 0) return ids.map(() => undefined);
    const texts = (await this.#cmd(['MGET', ...valid.map((id) => `${this.#P}e:${id}`)])) as Array<
      string | null
    >;
    const byId = new Map<string, Entry>();
    texts.forEach((text, i) => {
      if (!text) return;
      try {
        byId.set(valid[i]!, decodeEntry(text));
      } catch {
        // reported when the id itself is asked for
      }
    });
    return ids.map((id) => byId.get(id));
  }

  async renewLease(lease: Lease, now: number): Promise<boolean> {
    const r = await this.#eval(S.RENEW, [
      lease.hash,
      lease.token,
      String(now),
      String(this.#leaseMs),
    ]);
    return r === 1;
  }

  async claimOrphans(now: number): Promise<Lease[]> {
    const r = (await this.#eval(S.CLAIM, [
      String(now),
      String(this.#leaseMs),
      this.#newToken(),
      String(CLAIM_MAX),
    ])) as Array<[string, string, string, string]>;
    return r.map(([hash, token, query, id]) => ({ hash, token, query, id }));
  }

  async dropUnwanted(lease: Lease, now: number): Promise<boolean> {
    return (await this.#eval(S.DROP_UNWANTED, [lease.hash, lease.token, String(now)])) === 1;
  }

  async releaseLease(lease: Lease): Promise<void> {
    await this.#eval(S.RELEASE, [lease.hash, lease.token]);
  }

  async settle(lease: Lease, outcome: Outcome, now: number): Promise<SettleResult> {
    // Every id of a flight has the same query, so one summary goes into the shared fragment (and
    // with it into rule 2's reused image entries).
    const summary = summarizeQuery(JSON.parse(lease.query));
    const frag =
      outcome.kind === 'image'
        ? fragment({
            digest: outcome.digest,
            mime: outcome.mime,
            size: outcome.size,
            fetchedAt: outcome.fetchedAt,
            summary,
          })
        : fragment({
            status: outcome.status,
            errorType: outcome.errorType,
            message: outcome.message,
            summary,
          });
    this.#ownSettles.add(lease.hash);
    if (this.#ownSettles.size > 10_000) this.#ownSettles.clear();
    const r = (await this.#eval(S.SETTLE, [
      lease.hash,
      lease.token,
      outcome.kind,
      frag,
      outcome.kind === 'image' ? outcome.digest : '',
      String(outcome.kind === 'image' ? outcome.fetchedAt : now),
      String(this.#reuseMs),
    ])) as [string, string[]?];
    if (r[0] === 'nobytes') {
      // The bytes went between store and settle (Redis evicted them): an error is the truth.
      return this.settle(
        lease,
        {
          kind: 'error',
          status: 507,
          errorType: 'Insufficient storage',
          message:
            'The image was fetched but Redis no longer holds its bytes (evicted: check maxmemory and maxmemory-policy). POST the query again.',
        },
        now,
      );
    }
    if (r[0] !== 'accepted') {
      this.#ownSettles.delete(lease.hash);
      return { accepted: false };
    }
    const ids = r[1] ?? [];
    this.#emit({ type: 'settled', hash: lease.hash, ids });
    return { accepted: true, ids };
  }

  async putBlob(digest: string, bytes: Buffer, keepUntil: number): Promise<void> {
    if (!DIGEST.test(digest)) throw new RangeError('invalid blob digest');
    await this.#eval(S.PUT_BLOB, [
      digest,
      String(Math.round(keepUntil)),
      String(bytes.length),
      bytes,
    ]);
  }

  async getBlob(digest: string): Promise<Buffer | undefined> {
    if (!DIGEST.test(digest)) return undefined;
    try {
      return (await this.#link.commandBuffer(['GET', `${this.#P}b:${digest}`])) ?? undefined;
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  async dropBlob(digest: string, reason: 'lost' | 'damaged', id?: string): Promise<void> {
    if (!DIGEST.test(digest)) return;
    await this.#eval(S.DROP, [digest, id ?? '', reason === 'damaged' ? '1' : '0']);
    this.#emit({ type: 'deleted', ids: id ? [id] : [], digests: [digest] });
  }

  async acquireSlot(signal?: AbortSignal): Promise<Slot> {
    const token = this.#newToken();
    for (;;) {
      signal?.throwIfAborted();
      let waitMs: number;
      try {
        waitMs = (await this.#eval(S.ACQUIRE_SLOT, [
          token,
          String(Date.now()),
          String(this.#leaseMs),
          String(this.#concurrency),
        ])) as number;
      } catch {
        waitMs = SLOT_POLL_MS; // Redis unreachable: keep waiting; the fetch could not settle anyway
      }
      if (waitMs === 0) break;
      await this.#waitForSlot(Math.min(waitMs, SLOT_POLL_MS), signal);
    }
    let released = false;
    return {
      renew: async () => {
        if (!released)
          await this.#eval(S.RENEW_SLOT, [token, String(Date.now()), String(this.#leaseMs)]);
      },
      release: async () => {
        if (released) return;
        released = true;
        await this.#eval(S.RELEASE_SLOT, [token]);
      },
    };
  }

  #waitForSlot(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#slotWaiters.delete(done);
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        done();
        reject(signal?.reason);
      };
      const timer = setTimeout(done, ms);
      this.#slotWaiters.add(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async holdUpstream(untilMs: number): Promise<void> {
    await this.#eval(S.HOLD, [String(Math.round(untilMs))]);
  }

  async upstreamHeldUntil(): Promise<number> {
    const v = (await this.#cmd(['GET', `${this.#P}hold`])) as string | null;
    return v === null ? 0 : Number(v);
  }

  async sharing(hashes: string[], now: number): Promise<number[]> {
    // h:<hash> holds the query's live pending and image ids, scored by expiry.
    return Promise.all(
      hashes.map(
        async (hash) =>
          Number(await this.#cmd(['ZCOUNT', `${this.#P}h:${hash}`, `(${now}`, '+inf'])) || 0,
      ),
    );
  }

  async counts(now: number): Promise<Counts> {
    const [pending, image, error, storedBytes] = (await this.#eval(S.COUNTS, [
      String(now),
    ])) as number[];
    return { pending: pending!, image: image!, error: error!, storedBytes: storedBytes! };
  }

  async page({ cursor, limit, kind }: PageRequest, now: number): Promise<Page> {
    limit = Math.max(0, Math.min(PAGE_MAX_LIMIT, Math.floor(limit)));
    if (limit === 0) return { entries: [] };
    const entries: Entry[] = [];
    let start = cursor === undefined ? '+' : `(${cursor}`;
    let last: string | undefined;
    let scanned = 0;
    const batch = Math.min(1000, Math.max(50, limit * 2));
    while (entries.length < limit && scanned < PAGE_SCAN) {
      const members = (await this.#cmd([
        'ZRANGE',
        `${this.#P}c`,
        start,
        '-',
        'BYLEX',
        'REV',
        'LIMIT',
        '0',
        String(batch),
      ])) as string[];
      if (members.length === 0) return { entries };
      const texts = (await this.#cmd([
        'MGET',
        ...members.map((m) => `${this.#P}e:${m.slice(16)}`),
      ])) as Array<string | null>;
      let i = 0;
      for (; i < members.length && entries.length < limit; i++) {
        scanned++;
        last = members[i]!;
        const text = texts[i];
        if (!text) continue;
        try {
          const e = decodeEntry(text);
          if (e.expiresAt > now && matchesKind(kind, e)) entries.push(e);
        } catch {
          // unreadable: skipped here, reported when its id is asked for
        }
      }
      if (i === members.length && members.length < batch) return { entries };
      start = `(${last}`;
    }
    return last === undefined ? { entries } : { entries, next: last };
  }

  onEvent(listener: (event: CoordinatorEvent) => void): void {
    this.#listeners.push(listener);
  }

  async maintain(now: number): Promise<MaintenanceReport> {
    let expired = 0;
    let blobs = 0;
    // In bounded calls, so Redis never runs one long script; a busy cache takes a few.
    for (let i = 0; i < 100; i++) {
      const [e, b] = (await this.#eval(S.MAINTAIN, [
        String(now),
        String(MAINTAIN_MAX),
      ])) as number[];
      expired += e!;
      blobs += b!;
      if (e! < MAINTAIN_MAX && b! < MAINTAIN_MAX) break;
    }
    this.#metrics.expired.inc(expired);
    return {
      expired,
      blobsDeleted: blobs,
      orphansDeleted: 0,
      tempFilesDeleted: 0,
      evicted: 0,
    };
  }

  async checkReady(): Promise<void> {
    if (!this.#link.ready) throw new CoordinatorUnavailableError('not connected');
    await this.#cmd(['PING']);
  }

  async close(): Promise<void> {
    clearInterval(this.#epochTimer);
    for (const w of [...this.#slotWaiters]) w();
    await this.#link.close();
  }

  #newToken(): string {
    return `${this.#instance}.${(++this.#seq).toString(36)}`;
  }

  #emit(event: CoordinatorEvent): void {
    for (const l of this.#listeners) l(event);
  }

  #onMessage(message: string): void {
    const [type, a = '', b = ''] = message.split('|');
    switch (type) {
      case 's':
        if (this.#ownSettles.delete(a)) return;
        this.#emit({ type: 'settled', hash: a });
        return;
      case 'o':
        this.#emit({ type: 'orphaned', hash: a });
        return;
      case 'd':
        this.#emit({ type: 'deleted', ids: b ? [b] : [], digests: a ? [a] : [] });
        return;
      case 'r':
        for (const w of [...this.#slotWaiters]) w();
        return;
    }
  }

  #onState(up: boolean): void {
    if (!up) {
      if (!this.#down)
        this.#log.warn('lost the connection to Redis; answering 503 until it is back');
      this.#down = true;
      this.#emit({ type: 'connection', up: false });
      return;
    }
    if (!this.#down) return;
    this.#down = false;
    this.#lastError = '';
    this.#metrics.redisReconnects.inc();
    this.#log.info('reconnected to Redis; re-syncing');
    // A Redis that came back empty must be noticed before anything is served from memory again.
    void this.#checkEpoch()
      .catch(() => {})
      .finally(() => this.#emit({ type: 'connection', up: true }));
  }

  /**
   * The epoch key is created once per Redis dataset. If it vanished or changed, Redis restarted
   * without its data (or was flushed): every id this process remembers is dead.
   */
  async #checkEpoch(): Promise<void> {
    const epoch = (await this.#cmd([
      'EVAL',
      "redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])",
      '1',
      `${this.#P}epoch`,
      `${Date.now()}.${randomBytes(6).toString('hex')}`,
    ])) as string;
    if (this.#epoch !== undefined && epoch !== this.#epoch) {
      this.#log.warn('Redis lost its data (restarted empty or flushed): old ids are gone');
      this.#epoch = epoch;
      this.#emit({ type: 'reset' });
      return;
    }
    this.#epoch = epoch;
  }

  async #eval(script: LuaScript, args: Array<string | Buffer>): Promise<unknown> {
    try {
      return await this.#link.evalScript(script, [], [this.#P, ...args]);
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  async #cmd(args: string[]): Promise<unknown> {
    try {
      return await this.#link.command(args);
    } catch (err) {
      throw this.#unavailable(err);
    }
  }

  #unavailable(err: unknown): Error {
    if (err instanceof RedisUnavailable)
      return new CoordinatorUnavailableError(err.message, { cause: err });
    return err as Error;
  }
}

/** Sorts by creation time (15 digits of epoch ms), then id: lexical order is creation order. */
function member(createdAt: number, id: string): string {
  return `${String(Math.max(0, Math.round(createdAt))).padStart(15, '0')}:${id}`;
}

/** `"k":v,…` in the codec's field order, to be spliced into an entry's JSON by a script. */
function fragment(fields: Record<string, unknown>): string {
  return JSON.stringify(fields).slice(1, -1);
}
