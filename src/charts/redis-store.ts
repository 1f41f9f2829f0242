import { createHash, randomBytes } from 'node:crypto';
import {
  decodeDefinition,
  decodeState,
  emptyState,
  encodeDefinition,
  encodeState,
  isChartName,
  type ChartDefinition,
  type ChartState,
  type StoredChart,
} from './chart.ts';
import type { ChartPage, ChartStore, PutResult } from './store.ts';

/** A Lua script and its SHA-1, so a client can run it with EVALSHA. */
export interface ChartLua {
  source: string;
  sha: string;
}

/**
 * The two Redis operations the chart store needs. Any Redis client fits behind it (the service's
 * shared Redis adapter, or node-redis directly); replies are RESP2 values: strings, integers,
 * arrays, null.
 */
export interface ChartRedis {
  command(args: string[]): Promise<unknown>;
  evalScript(script: ChartLua, keys: string[], args: string[]): Promise<unknown>;
}

const lua = (source: string): ChartLua => ({
  source,
  sha: createHash('sha1').update(source).digest('hex'),
});

/** KEYS: chart hash, name index. ARGV: name, definition, generation, max count. */
const PUT = lua(`
local exists = redis.call('EXISTS', KEYS[1])
if exists == 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 'limit' end
redis.call('HSET', KEYS[1], 'def', ARGV[2], 'gen', ARGV[3])
redis.call('HDEL', KEYS[1], 'state')
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if exists == 0 then return 'created' end
return 'replaced'
`);

/** KEYS: chart hash, name index. ARGV: name. */
const DELETE = lua(`
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
`);

/** KEYS: chart hash. ARGV: generation, state. Lands only on the generation it refreshed. */
const PUT_STATE = lua(`
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
return 1
`);

/** KEYS: lock. ARGV: token. Deletes the lock only if this token still holds it. */
const UNLOCK = lua(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

/**
 * Charts in Redis, shared by every replica:
 *   <prefix>chart:<name>       hash { def, gen, state }
 *   <prefix>charts             sorted set of names, all score 0, so ZRANGEBYLEX pages by name
 *   <prefix>chart-lock:<name>  refresh lock, SET NX PX: one refresh per chart across the cluster
 * Multi-key changes run as Lua scripts, so they are atomic.
 */
export class RedisChartStore implements ChartStore {
  readonly #redis: ChartRedis;
  readonly #prefix: string;
  readonly #onClose: () => Promise<void>;

  constructor(redis: ChartRedis, prefix: string, onClose: () => Promise<void> = async () => {}) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#onClose = onClose;
  }

  async open(): Promise<void> {}

  close(): Promise<void> {
    return this.#onClose();
  }

  #key(name: string): string {
    if (!isChartName(name)) throw new RangeError(`invalid chart name ${JSON.stringify(name)}`);
    return `${this.#prefix}chart:${name}`;
  }

  get #index(): string {
    return `${this.#prefix}charts`;
  }

  async get(name: string): Promise<StoredChart | undefined> {
    const reply = (await this.#redis.command(['HMGET', this.#key(name), 'def', 'state'])) as Array<
      string | null
    >;
    return decode(name, reply);
  }

  async list(after: string | undefined, limit: number): Promise<ChartPage> {
    const min = after === undefined ? '-' : `(${after}`;
    const [names, total] = await Promise.all([
      this.#redis.command([
        'ZRANGEBYLEX',
        this.#index,
        min,
        '+',
        'LIMIT',
        '0',
        String(limit + 1),
      ]) as Promise<string[]>,
      this.count(),
    ]);
    const page = names.slice(0, limit);
    const charts = (await Promise.all(page.map((n) => this.get(n)))).filter((c) => c !== undefined);
    return { charts, total, ...(names.length > limit ? { next: page.at(-1) } : {}) };
  }

  async count(): Promise<number> {
    return Number(await this.#redis.command(['ZCARD', this.#index]));
  }

  async put(definition: ChartDefinition, maxCount: number): Promise<PutResult> {
    const { name } = definition;
    const result = await this.#redis.evalScript(
      PUT,
      [this.#key(name), this.#index],
      [name, encodeDefinition(definition), definition.generation, String(maxCount)],
    );
    if (result !== 'created' && result !== 'replaced' && result !== 'limit')
      throw new Error(`unexpected reply from the chart PUT script: ${String(result)}`);
    return result;
  }

  async delete(name: string): Promise<boolean> {
    return Number(await this.#redis.evalScript(DELETE, [this.#key(name), this.#index], [name])) > 0;
  }

  async putState(name: string, state: ChartState): Promise<boolean> {
    const r = await this.#redis.evalScript(
      PUT_STATE,
      [this.#key(name)],
      [state.generation, encodeState(state)],
    );
    return Number(r) === 1;
  }

  async lock(name: string, ttlMs: number): Promise<string | undefined> {
    const token = randomBytes(8).toString('hex');
    const ok = await this.#redis.command([
      'SET',
      this.#lockKey(name),
      token,
      'NX',
      'PX',
      String(Math.max(1, Math.round(ttlMs))),
    ]);
    return ok === 'OK' ? token : undefined;
  }

  async unlock(name: string, token: string): Promise<void> {
    await this.#redis.evalScript(UNLOCK, [this.#lockKey(name)], [token]);
  }

  #lockKey(name: string): string {
    if (!isChartName(name)) throw new RangeError(`invalid chart name ${JSON.stringify(name)}`);
    return `${this.#prefix}chart-lock:${name}`;
  }
}

function decode(name: string, reply: Array<string | null>): StoredChart | undefined {
  const [def, state] = reply;
  if (def === null || def === undefined) return undefined;
  let definition: ChartDefinition;
  try {
    definition = decodeDefinition(def);
  } catch (err) {
    throw new Error(`chart ${name} in Redis is unreadable: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let s = emptyState(definition.generation);
  if (state) {
    try {
      const decoded = decodeState(state);
      if (decoded.generation === definition.generation) s = decoded;
    } catch {
      // A damaged state only costs a refresh: start over rather than fail the chart.
    }
  }
  return { definition, state: s };
}
