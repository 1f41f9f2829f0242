import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { Secret } from './secret.ts';

export interface Config {
  ktAuthEmail: string;
  ktAuthToken: Secret;
  kentikApiUrl: string;
  kentikApiRetries: number;
  /** Per-attempt upstream timeout, milliseconds. */
  kentikApiTimeoutMs: number;
  kentikApiConcurrency: number;
  /** First retry delay in milliseconds; doubles per attempt, with jitter. */
  kentikApiBackoffMs: number;
  /** Seconds. */
  defaultTtl: number;
  /** Seconds. */
  maxTtl: number;
  /** Milliseconds a GET waits for a pending entry. */
  entryWaitTimeoutMs: number;
  /** Seconds during which a fetched image is reused for new ids (rule 2). */
  reuseWindow: number;
  /** `filesystem` (one process, CACHE_PATH) or `redis` (several replicas sharing REDIS_URL). */
  cacheBackend: 'filesystem' | 'redis';
  /** Absolute path; empty with the redis backend. */
  cachePath: string;
  /** Set with the redis backend; the URL may carry a password, so it is a Secret as a whole. */
  redisUrl: Secret | undefined;
  /** Prefix of every Redis key and channel. */
  redisKeyPrefix: string;
  /** Seconds a fetch's lease lasts without renewal before another process may take it over. */
  flightLease: number;
  /** Milliseconds between maintenance passes. */
  maintenancePeriodMs: number;
  cacheMaxBytes: number | undefined;
  /** Bytes of image data kept in memory for hot GETs. */
  memoryCacheBytes: number;
  host: string;
  port: number;
  debug: boolean;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(
      `Invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map((p) => `  - ${p}`).join('\n') +
        '\nSet these as environment variables or in a .env file in the working directory; see README.md#configuration.',
    );
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** Reads `.env` from `cwd` (if present) under the real environment: the environment wins. */
export function readEnv(cwd = process.cwd(), env: Env = process.env): Env {
  const file = path.join(cwd, '.env');
  const fromFile = existsSync(file) ? parseEnv(readFileSync(file, 'utf8')) : {};
  return { ...fromFile, ...env };
}

/**
 * Validates every setting and reports all problems at once, so an operator fixes a broken
 * deployment in one round instead of one restart per typo.
 */
export function loadConfig(env: Env): Config {
  const problems: string[] = [];
  const raw = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };

  const required = (name: string, hint: string): string => {
    const v = raw(name);
    if (v === undefined) problems.push(`${name} is required: ${hint}`);
    return v ?? '';
  };

  const number = (
    name: string,
    fallback: number,
    opts: { min?: number; max?: number; integer?: boolean; unit?: string } = {},
  ): number => {
    const v = raw(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    const kind = opts.integer ? 'an integer' : 'a number';
    const range =
      opts.min !== undefined && opts.max !== undefined
        ? ` from ${opts.min} to ${opts.max}`
        : opts.min !== undefined
          ? ` ≥ ${opts.min}`
          : '';
    if (
      !Number.isFinite(n) ||
      (opts.integer && !Number.isInteger(n)) ||
      (opts.min !== undefined && n < opts.min) ||
      (opts.max !== undefined && n > opts.max)
    ) {
      problems.push(
        `${name}=${JSON.stringify(v)} must be ${kind}${range}${opts.unit ? ` (${opts.unit})` : ''}`,
      );
      return fallback;
    }
    return n;
  };

  const ktAuthEmail = required(
    'KT_AUTH_EMAIL',
    'the e-mail of the Kentik user whose API token is used',
  );
  const token = required(
    'KT_AUTH_TOKEN',
    "that user's Kentik API token (Settings → Profile → API token)",
  );

  const kentikApiUrl = (raw('KENTIK_API_URL') ?? 'https://api.kentik.com/api/v5').replace(
    /\/+$/,
    '',
  );
  try {
    const u = new URL(kentikApiUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('protocol');
  } catch {
    problems.push(
      `KENTIK_API_URL=${JSON.stringify(kentikApiUrl)} must be an http(s) URL such as https://api.kentik.com/api/v5`,
    );
  }

  const kentikApiRetries = number('KENTIK_API_RETRIES', 3, { min: 0, max: 20, integer: true });
  const kentikApiTimeout = number('KENTIK_API_TIMEOUT', 60, {
    min: 0.01,
    max: 3600,
    unit: 'seconds',
  });
  const kentikApiBackoff = number('KENTIK_API_BACKOFF', 1, { min: 0, max: 600, unit: 'seconds' });
  const kentikApiConcurrency = number('KENTIK_API_CONCURRENCY', 4, {
    min: 1,
    max: 1000,
    integer: true,
  });
  const maxTtl = number('MAX_TTL', 7 * 24 * 3600, { min: 1, integer: true, unit: 'seconds' });
  const defaultTtl = number('DEFAULT_TTL', 300, { min: 1, integer: true, unit: 'seconds' });
  if (defaultTtl > maxTtl)
    problems.push(`DEFAULT_TTL=${defaultTtl} must not exceed MAX_TTL=${maxTtl}`);
  const entryWaitTimeout = number('ENTRY_WAIT_TIMEOUT', kentikApiRetries * kentikApiTimeout + 5, {
    min: 0,
    max: 86_400,
    unit: 'seconds',
  });
  const reuseWindow = number('REUSE_WINDOW', 60, { min: 0, unit: 'seconds' });
  const maintenancePeriod = number('CACHE_MAINTENANCE_PERIOD', 60, {
    min: 0.05,
    max: 86_400,
    unit: 'seconds',
  });
  const cacheMaxBytesRaw = raw('CACHE_MAX_BYTES');
  const cacheMaxBytes =
    cacheMaxBytesRaw === undefined
      ? undefined
      : number('CACHE_MAX_BYTES', 0, { min: 1, integer: true, unit: 'bytes' });
  const memoryCacheBytes = number('MEMORY_CACHE_BYTES', 64 * 1024 * 1024, {
    min: 0,
    integer: true,
    unit: 'bytes',
  });
  const port = number('PORT', 8000, { min: 0, max: 65535, integer: true });
  const host = raw('HOST') ?? '127.0.0.1';

  const backendRaw = (raw('CACHE_BACKEND') ?? 'filesystem').toLowerCase();
  const cacheBackend = backendRaw === 'redis' ? 'redis' : 'filesystem';
  if (backendRaw !== 'filesystem' && backendRaw !== 'redis')
    problems.push(
      `CACHE_BACKEND=${JSON.stringify(raw('CACHE_BACKEND'))} must be filesystem (one process, CACHE_PATH) or redis (several replicas, REDIS_URL)`,
    );
  const cachePathRaw =
    cacheBackend === 'filesystem'
      ? required('CACHE_PATH', 'a directory for cached images and entries (created if missing)')
      : (raw('CACHE_PATH') ?? '');
  let redisUrl: Secret | undefined;
  const redisUrlRaw = raw('REDIS_URL');
  if (cacheBackend === 'redis') {
    if (redisUrlRaw === undefined) {
      problems.push(
        'REDIS_URL is required with CACHE_BACKEND=redis: redis://[:password@]host:port[/db], or rediss:// for TLS',
      );
    } else {
      const problem = redisUrlProblem(redisUrlRaw);
      // The URL may hold a password: the message names the part that is wrong, never the value.
      if (problem) problems.push(`REDIS_URL ${problem}`);
      else redisUrl = new Secret(redisUrlRaw);
    }
  }
  const redisKeyPrefix = raw('REDIS_KEY_PREFIX') ?? 'kic:';
  if (!/^[\x21-\x7e]{1,64}$/.test(redisKeyPrefix))
    problems.push(
      `REDIS_KEY_PREFIX=${JSON.stringify(redisKeyPrefix.slice(0, 80))} must be 1–64 printable characters without spaces, e.g. kic: or team-a:kic:`,
    );
  const flightLease = number('FLIGHT_LEASE', 10, { min: 0.2, max: 3600, unit: 'seconds' });

  const debugRaw = (raw('DEBUG') ?? '').toLowerCase();
  if (!['', '0', '1', 'true', 'false', 'yes', 'no', 'on', 'off'].includes(debugRaw)) {
    problems.push(
      `DEBUG=${JSON.stringify(raw('DEBUG'))} must be 1/0, true/false, yes/no or on/off`,
    );
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    ktAuthEmail,
    ktAuthToken: new Secret(token),
    kentikApiUrl,
    kentikApiRetries,
    kentikApiTimeoutMs: Math.round(kentikApiTimeout * 1000),
    kentikApiConcurrency,
    kentikApiBackoffMs: Math.round(kentikApiBackoff * 1000),
    defaultTtl,
    maxTtl,
    entryWaitTimeoutMs: Math.round(entryWaitTimeout * 1000),
    reuseWindow,
    cacheBackend,
    cachePath: cachePathRaw === '' ? '' : path.resolve(cachePathRaw),
    redisUrl,
    redisKeyPrefix,
    flightLease,
    maintenancePeriodMs: Math.round(maintenancePeriod * 1000),
    cacheMaxBytes,
    memoryCacheBytes,
    host,
    port,
    debug: ['1', 'true', 'yes', 'on'].includes(debugRaw),
  };
}

/** What is wrong with a Redis URL, in words that never repeat the URL (it may hold a password). */
export function redisUrlProblem(text: string): string | undefined {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return 'is not a URL: use redis://[:password@]host:port[/db], or rediss:// for TLS';
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    return `must start with redis:// or rediss:// (TLS), not ${u.protocol.slice(0, 20)}//`;
  if (!u.hostname) return 'has no host: use redis://[:password@]host:port[/db]';
  const db = u.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,5}$/.test(db))
    return 'has a path that is not a database number: use redis://host:port/0';
  if (u.search || u.hash) return 'must not have a query string or fragment';
  return undefined;
}
