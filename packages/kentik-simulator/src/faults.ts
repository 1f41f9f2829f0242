/**
 * Fault injection: which answer a call gets before any chart is drawn. Order per call:
 * a scripted outcome if one is queued, else the rate limiter, else one seeded random draw over
 * the configured fault rates; plus the latency (+ jitter) every answer waits.
 */
import { mulberry32, type Rng } from './prng.ts';

export type ErrorStatus = 429 | 500 | 502 | 503 | 504;
export const ERROR_STATUSES: readonly ErrorStatus[] = [429, 500, 502, 503, 504];

export interface FaultConfig {
  /** Fixed latency before answering, ms (default 0). */
  latencyMs: number;
  /** Plus a uniform random 0..jitterMs, ms (default 0). */
  jitterMs: number;
  /** Probability (0..1) per call of answering with this status. */
  errorRates: Partial<Record<ErrorStatus, number>>;
  /** Retry-After header value sent with 429s (seconds or an HTTP date); null: no header. Default "1". */
  retryAfter: string | null;
  /** 0 = off; more calls than this within a sliding 60 s window get 429 with Retry-After. */
  rateLimitPerMinute: number;
  /** Probability that a call is never answered (the socket stays open until the client gives up). */
  hangRate: number;
  /** Probability that the connection is destroyed without any response. */
  resetRate: number;
  /** Probability of a 200 whose body is not JSON. */
  malformedJsonRate: number;
  /** Probability of a 200 {"dataUri": ...} that is not a valid data URI / base64 / known mime. */
  malformedDataUriRate: number;
  /** Seed of the PRNG behind all probabilities and jitter. */
  seed: number;
}

export type ScriptedOutcome =
  | { kind: 'status'; status: number; retryAfter?: string; message?: string }
  | { kind: 'hang' }
  | { kind: 'reset' }
  | { kind: 'malformed-json' }
  | { kind: 'malformed-data-uri' }
  | { kind: 'ok' }
  | { kind: 'svg-raw'; svg: string }
  /** 200, then the body a few bytes at a time, never finished (a stuck proxy, a slowloris upstream). */
  | { kind: 'drip'; bytesPerSecond: number }
  /** 200 with a valid-looking PNG dataUri of `bytes` image bytes, streamed without Content-Length. */
  | { kind: 'oversize'; bytes: number };

export const DEFAULT_FAULTS: Readonly<FaultConfig> = Object.freeze({
  latencyMs: 0,
  jitterMs: 0,
  errorRates: {},
  retryAfter: '1',
  rateLimitPerMinute: 0,
  hangRate: 0,
  resetRate: 0,
  malformedJsonRate: 0,
  malformedDataUriRate: 0,
  seed: 1,
});

/** What the server does with a call (after auth, before validation and rendering). */
export type Decision =
  | {
      kind: 'status';
      status: number;
      retryAfter: string | null;
      message?: string;
      source: 'script' | 'rate-limit' | 'random';
    }
  | { kind: 'hang' }
  | { kind: 'reset' }
  | { kind: 'malformed-json'; variant: number }
  | { kind: 'malformed-data-uri'; variant: number }
  | { kind: 'svg-raw'; svg: string }
  | { kind: 'drip'; bytesPerSecond: number }
  | { kind: 'oversize'; bytes: number }
  /** Validate and render normally. */
  | { kind: 'ok' };

type Result<T> = { ok: true; value: T } | { ok: false; message: string };

const RATE_KEYS = ['hangRate', 'resetRate', 'malformedJsonRate', 'malformedDataUriRate'] as const;
const MS_KEYS = ['latencyMs', 'jitterMs'] as const;
const MAX_DELAY_MS = 10 * 60_000;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function probability(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) {
    throw new Error(`${name} must be a number from 0 to 1`);
  }
  return v;
}

/** Parse "503=0.1,429=0.05" (CLI / env form of errorRates). */
export function parseErrorRates(s: string): Result<Partial<Record<ErrorStatus, number>>> {
  const out: Partial<Record<ErrorStatus, number>> = {};
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^(\d{3})\s*[=:]\s*([0-9.]+)$/.exec(part);
    const status = Number(m?.[1]) as ErrorStatus;
    const rate = Number(m?.[2]);
    if (!m || !ERROR_STATUSES.includes(status) || !(rate >= 0 && rate <= 1)) {
      return {
        ok: false,
        message: `bad error rate '${part}': expected STATUS=PROBABILITY with STATUS one of ${ERROR_STATUSES.join(', ')} and PROBABILITY from 0 to 1`,
      };
    }
    out[status] = rate;
  }
  return { ok: true, value: out };
}

/**
 * Check a partial FaultConfig coming from JSON (admin endpoint) or code. Unknown keys and
 * out-of-range values are rejected; errorRates keys may be strings ("503").
 */
export function checkFaults(input: unknown): Result<Partial<FaultConfig>> {
  try {
    if (!isRecord(input)) throw new Error('faults must be a JSON object');
    const out: Partial<FaultConfig> = {};
    for (const [key, v] of Object.entries(input)) {
      if ((MS_KEYS as readonly string[]).includes(key)) {
        if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > MAX_DELAY_MS) {
          throw new Error(`${key} must be a number of milliseconds from 0 to ${MAX_DELAY_MS}`);
        }
        out[key as (typeof MS_KEYS)[number]] = v;
      } else if ((RATE_KEYS as readonly string[]).includes(key)) {
        out[key as (typeof RATE_KEYS)[number]] = probability(v, key);
      } else if (key === 'errorRates') {
        if (!isRecord(v)) throw new Error('errorRates must be an object such as {"503": 0.1}');
        const rates: Partial<Record<ErrorStatus, number>> = {};
        for (const [status, rate] of Object.entries(v)) {
          const code = Number(status) as ErrorStatus;
          if (!ERROR_STATUSES.includes(code)) {
            throw new Error(`errorRates key ${status} must be one of ${ERROR_STATUSES.join(', ')}`);
          }
          rates[code] = probability(rate, `errorRates.${status}`);
        }
        out.errorRates = rates;
      } else if (key === 'retryAfter') {
        if (v !== null && (typeof v !== 'string' || v.length > 64 || /[\r\n]/.test(v))) {
          throw new Error('retryAfter must be a short string (seconds or an HTTP date) or null');
        }
        out.retryAfter = v;
      } else if (key === 'rateLimitPerMinute') {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
          throw new Error('rateLimitPerMinute must be a non-negative integer (0 = off)');
        }
        out.rateLimitPerMinute = v;
      } else if (key === 'seed') {
        if (typeof v !== 'number' || !Number.isInteger(v))
          throw new Error('seed must be an integer');
        out.seed = v;
      } else {
        throw new Error(`unknown fault setting '${key}'`);
      }
    }
    return { ok: true, value: out };
  } catch (e) {
    return { ok: false, message: (e as Error).message };
  }
}

/** Check a scripted outcome coming from JSON. */
export function checkScript(input: unknown): Result<ScriptedOutcome[]> {
  if (!Array.isArray(input))
    return { ok: false, message: 'script must be a JSON array of outcomes' };
  const out: ScriptedOutcome[] = [];
  for (const [i, o] of input.entries()) {
    const bad = (why: string): Result<ScriptedOutcome[]> => ({
      ok: false,
      message: `script[${i}]: ${why}`,
    });
    if (!isRecord(o)) return bad('expected an object with "kind"');
    switch (o.kind) {
      case 'status': {
        const { status, retryAfter, message } = o;
        if (
          typeof status !== 'number' ||
          !Number.isInteger(status) ||
          status < 200 ||
          status > 999
        ) {
          return bad('status must be an integer HTTP status from 200 to 999');
        }
        if (
          retryAfter !== undefined &&
          (typeof retryAfter !== 'string' || /[\r\n]/.test(retryAfter))
        ) {
          return bad('retryAfter must be a string');
        }
        if (message !== undefined && typeof message !== 'string')
          return bad('message must be a string');
        out.push({
          kind: 'status',
          status,
          ...(retryAfter !== undefined ? { retryAfter } : {}),
          ...(message !== undefined ? { message } : {}),
        });
        break;
      }
      case 'svg-raw':
        if (typeof o.svg !== 'string') return bad('svg must be a string');
        out.push({ kind: 'svg-raw', svg: o.svg });
        break;
      case 'drip': {
        const rate = o.bytesPerSecond ?? 10;
        if (typeof rate !== 'number' || !(rate > 0 && rate <= 1_000_000))
          return bad('bytesPerSecond must be a number from 1 to 1000000');
        out.push({ kind: 'drip', bytesPerSecond: rate });
        break;
      }
      case 'oversize': {
        const { bytes } = o;
        if (typeof bytes !== 'number' || !Number.isInteger(bytes) || bytes < 1 || bytes > 2 ** 30)
          return bad('bytes must be an integer from 1 to 2^30');
        out.push({ kind: 'oversize', bytes });
        break;
      }
      case 'hang':
      case 'reset':
      case 'malformed-json':
      case 'malformed-data-uri':
      case 'ok':
        out.push({ kind: o.kind });
        break;
      default:
        return bad(
          'kind must be one of status, hang, reset, malformed-json, malformed-data-uri, ok, svg-raw, drip, oversize',
        );
    }
  }
  return { ok: true, value: out };
}

export function mergeFaults(base: FaultConfig, patch: Partial<FaultConfig>): FaultConfig {
  return {
    ...base,
    ...patch,
    errorRates: { ...base.errorRates, ...(patch.errorRates ?? {}) },
  };
}

/** Fault state of one simulator: config, script queue, rate-limit window, seeded PRNGs. */
export class FaultEngine {
  #start: FaultConfig;
  #config: FaultConfig;
  #script: ScriptedOutcome[] = [];
  #window: number[] = [];
  #faultRng: Rng = Math.random;
  #jitterRng: Rng = Math.random;
  #malformedJson = 0;
  #malformedDataUri = 0;

  constructor(start: Partial<FaultConfig> = {}) {
    this.#start = mergeFaults({ ...DEFAULT_FAULTS, errorRates: {} }, start);
    this.#config = this.#start;
    this.#reseed();
  }

  get config(): FaultConfig {
    return { ...this.#config, errorRates: { ...this.#config.errorRates } };
  }

  get queued(): number {
    return this.#script.length;
  }

  /** Merge settings (errorRates merge per status). A new seed restarts the random sequences. */
  set(patch: Partial<FaultConfig>): void {
    this.#config = mergeFaults(this.#config, patch);
    if (patch.seed !== undefined) this.#reseed();
  }

  script(outcomes: readonly ScriptedOutcome[]): void {
    this.#script.push(...outcomes);
  }

  /** Back to the start configuration; script, rate-limit window and PRNGs cleared. */
  reset(): void {
    this.#config = this.#start;
    this.#script = [];
    this.#window = [];
    this.#malformedJson = 0;
    this.#malformedDataUri = 0;
    this.#reseed();
  }

  #reseed(): void {
    this.#faultRng = mulberry32(this.#config.seed ^ 0x5eed);
    this.#jitterRng = mulberry32((this.#config.seed ^ 0x71773) + 1);
  }

  /** Decide the fate of a call arriving at `nowMs`. */
  decide(nowMs: number): Decision {
    const scripted = this.#script.shift();
    if (scripted) return this.#fromScript(scripted);

    const c = this.#config;
    if (c.rateLimitPerMinute > 0) {
      while (this.#window.length > 0 && (this.#window[0] ?? 0) <= nowMs - 60_000)
        this.#window.shift();
      if (this.#window.length >= c.rateLimitPerMinute) {
        return { kind: 'status', status: 429, retryAfter: c.retryAfter, source: 'rate-limit' };
      }
      this.#window.push(nowMs);
    }

    // One draw per call over the cumulative rates: a fixed seed replays the same sequence.
    const u = this.#faultRng();
    let acc = 0;
    const hit = (rate: number): boolean => {
      acc += rate;
      return rate > 0 && u < acc;
    };
    if (hit(c.hangRate)) return { kind: 'hang' };
    if (hit(c.resetRate)) return { kind: 'reset' };
    if (hit(c.malformedJsonRate)) return { kind: 'malformed-json', variant: this.#malformedJson++ };
    if (hit(c.malformedDataUriRate))
      return { kind: 'malformed-data-uri', variant: this.#malformedDataUri++ };
    for (const status of ERROR_STATUSES) {
      if (hit(c.errorRates[status] ?? 0)) {
        return {
          kind: 'status',
          status,
          retryAfter: status === 429 ? c.retryAfter : null,
          source: 'random',
        };
      }
    }
    return { kind: 'ok' };
  }

  #fromScript(o: ScriptedOutcome): Decision {
    switch (o.kind) {
      case 'status':
        return {
          kind: 'status',
          status: o.status,
          retryAfter: o.retryAfter ?? (o.status === 429 ? this.#config.retryAfter : null),
          ...(o.message !== undefined ? { message: o.message } : {}),
          source: 'script',
        };
      case 'malformed-json':
        return { kind: 'malformed-json', variant: this.#malformedJson++ };
      case 'malformed-data-uri':
        return { kind: 'malformed-data-uri', variant: this.#malformedDataUri++ };
      default:
        return o;
    }
  }

  /** Latency for the next answer: latencyMs + uniform 0..jitterMs. */
  delayMs(): number {
    const { latencyMs, jitterMs } = this.#config;
    return latencyMs + (jitterMs > 0 ? Math.round(this.#jitterRng() * jitterMs) : 0);
  }
}
