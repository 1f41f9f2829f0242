import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { Secret } from './secret.ts';
import { loadChartSettings, type ChartSettings } from './charts/settings.ts';

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
  /** Named live charts (src/charts). */
  charts: ChartSettings;
  /** API keys by name; empty: POST /requests and /info are open (the original API). */
  apiKeys: ApiKey[];
  /** Bearer key /metrics requires; undefined: /metrics is open. */
  metricsKey: Secret | undefined;
  /** Fastify `trustProxy`: whether (and which) X-Forwarded-For is believed for the client address. */
  trustProxy: boolean | number | string;
  /** POST /requests per client per window; 0 turns the rate limit off. */
  rateLimitMax: number;
  rateLimitWindowMs: number;
  /** Upstream fetches queued or running beyond which a new miss is refused (503). */
  maxPending: number;
  /** Largest POST body, bytes (the query is almost all of it). */
  maxQueryBytes: number;
  /** Largest image Kentik may send, bytes (decoded). */
  kentikMaxImageBytes: number;
  /** Sockets open at once; beyond it new connections are closed at once. */
  maxConnections: number;
  /** Sockets open at once from one client address; 0: no per-address cap. */
  maxConnectionsPerAddress: number;
  /** Milliseconds a client has to send its headers / its whole request. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  /** Milliseconds an idle keep-alive socket is kept. */
  keepAliveTimeoutMs: number;
}

export interface ApiKey {
  /** Logged instead of the key. */
  name: string;
  key: Secret;
}

/** The largest MAX_TTL accepted (30 days): see README "Configuration" for why. */
export const MAX_TTL_CAP = 30 * 24 * 3600;

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

/** pino's levels; anything else is a typo that would silently log at info. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

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
      `KENTIK_API_URL=${JSON.stringify(redactUrlCredentials(kentikApiUrl))} must be an http(s) URL such as https://api.kentik.com/api/v5`,
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
  // Capped: an id pins its bytes on disk for its whole ttl, and every ttl band can hold its own
  // ids of one query (see ImageCache), so an unbounded MAX_TTL is unbounded disk for one POST.
  const maxTtl = number('MAX_TTL', 7 * 24 * 3600, {
    min: 1,
    max: MAX_TTL_CAP,
    integer: true,
    unit: 'seconds',
  });
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

  const logLevel = raw('LOG_LEVEL');
  if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel)) {
    problems.push(`LOG_LEVEL=${JSON.stringify(logLevel)} must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const charts = loadChartSettings(number);
  const apiKeys = loadApiKeys(raw('API_KEYS'), raw('API_KEYS_FILE'), problems);
  const metricsKeyRaw = raw('METRICS_KEY');
  if (metricsKeyRaw !== undefined && metricsKeyRaw.length < MIN_KEY_LENGTH)
    problems.push(`METRICS_KEY must be at least ${MIN_KEY_LENGTH} characters long`);
  const trustProxy = parseTrustProxy(raw('TRUST_PROXY'), problems);
  const rateLimitMax = number('RATE_LIMIT_MAX', 120, { min: 0, integer: true });
  const rateLimitWindow = number('RATE_LIMIT_WINDOW', 60, {
    min: 1,
    max: 86_400,
    unit: 'seconds',
  });
  const maxPending = number('MAX_PENDING', 200, { min: 1, integer: true });
  const maxQueryBytes = number('MAX_QUERY_BYTES', 64 * 1024, {
    min: 1024,
    max: 1024 * 1024,
    integer: true,
    unit: 'bytes',
  });
  const kentikMaxImageBytes = number('KENTIK_MAX_IMAGE_BYTES', 16 * 1024 * 1024, {
    min: 1024,
    max: 256 * 1024 * 1024,
    integer: true,
    unit: 'bytes',
  });
  const maxConnections = number('MAX_CONNECTIONS', 512, { min: 1, integer: true });
  // Without it, one client holding MAX_CONNECTIONS slow sockets locks everyone else out until its
  // sockets time out. Half, not less: an office behind one NAT address is many legitimate clients.
  // Behind a proxy (TRUST_PROXY) every connection comes from the proxy: off.
  const maxConnectionsPerAddress = number(
    'MAX_CONNECTIONS_PER_ADDRESS',
    trustProxy === false ? Math.max(1, Math.floor(maxConnections / 2)) : 0,
    { min: 0, integer: true },
  );
  const headersTimeout = number('HEADERS_TIMEOUT', 10, { min: 0.1, max: 600, unit: 'seconds' });
  const requestTimeout = number('REQUEST_TIMEOUT', 30, { min: 0.1, max: 3600, unit: 'seconds' });
  const keepAliveTimeout = number('KEEP_ALIVE_TIMEOUT', 5, { min: 0.1, max: 600, unit: 'seconds' });
  if (headersTimeout > requestTimeout)
    problems.push(
      `HEADERS_TIMEOUT=${headersTimeout} must not exceed REQUEST_TIMEOUT=${requestTimeout}`,
    );

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
    charts,
    apiKeys,
    metricsKey: metricsKeyRaw === undefined ? undefined : new Secret(metricsKeyRaw),
    trustProxy,
    rateLimitMax,
    rateLimitWindowMs: Math.round(rateLimitWindow * 1000),
    maxPending,
    maxQueryBytes,
    kentikMaxImageBytes,
    maxConnections,
    maxConnectionsPerAddress,
    headersTimeoutMs: Math.round(headersTimeout * 1000),
    requestTimeoutMs: Math.round(requestTimeout * 1000),
    keepAliveTimeoutMs: Math.round(keepAliveTimeout * 1000),
  };
}

/** A key shorter than this is guessable; keys are compared in constant time, not rate limited. */
export const MIN_KEY_LENGTH = 16;

/**
 * `API_KEYS` is `key,key` or `name:key,name:key`; `API_KEYS_FILE` has one such item per line
 * (blank lines and `#` comments skipped). Both may be set. Problems never quote a key.
 */
function loadApiKeys(
  list: string | undefined,
  file: string | undefined,
  problems: string[],
): ApiKey[] {
  const items: Array<{ item: string; where: string }> = [];
  if (list !== undefined)
    list.split(',').forEach((item, i) => items.push({ item, where: `API_KEYS item ${i + 1}` }));
  if (file !== undefined) {
    try {
      readFileSync(file, 'utf8')
        .split(/\r?\n/)
        .forEach((item, i) => {
          if (!item.trim().startsWith('#'))
            items.push({ item, where: `API_KEYS_FILE line ${i + 1}` });
        });
    } catch (err) {
      problems.push(
        `API_KEYS_FILE=${JSON.stringify(file)} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
  }
  const keys: ApiKey[] = [];
  const names = new Set<string>();
  for (const { item, where } of items) {
    const trimmed = item.trim();
    if (trimmed === '') continue;
    const colon = trimmed.indexOf(':');
    const name = colon > 0 ? trimmed.slice(0, colon).trim() : `key${keys.length + 1}`;
    const key = colon > 0 ? trimmed.slice(colon + 1).trim() : trimmed;
    if (!/^[\w.@-]{1,64}$/.test(name)) {
      problems.push(`${where}: the name must be 1–64 letters, digits, _ . @ or -`);
      continue;
    }
    if (key.length < MIN_KEY_LENGTH || /\s/.test(key)) {
      problems.push(
        `${where} (${name}): a key must be at least ${MIN_KEY_LENGTH} characters without spaces (e.g. \`openssl rand -hex 24\`)`,
      );
      continue;
    }
    if (names.has(name)) {
      problems.push(`${where}: the name ${name} is used twice`);
      continue;
    }
    names.add(name);
    keys.push({ name, key: new Secret(key) });
  }
  if ((list !== undefined || file !== undefined) && keys.length === 0 && problems.length === 0)
    problems.push('API_KEYS / API_KEYS_FILE are set but hold no key');
  return keys;
}

/** `true`/`false`, a number of proxy hops, or addresses/CIDRs of trusted proxies (comma-separated). */
function parseTrustProxy(v: string | undefined, problems: string[]): boolean | number | string {
  if (v === undefined) return false;
  const lower = v.toLowerCase();
  if (['0', 'false', 'no', 'off'].includes(lower)) return false;
  if (['true', 'yes', 'on'].includes(lower)) return true;
  if (/^[1-9]\d?$/.test(v)) return Number(v);
  if (/^[0-9a-fA-F.:/, ]+$/.test(v)) return v;
  problems.push(
    `TRUST_PROXY=${JSON.stringify(v)} must be true/false, a number of proxy hops, or proxy addresses/CIDRs (comma-separated)`,
  );
  return false;
}

/** `https://user:pass@host/…` → `https://[REDACTED]@host/…`, in any text. */
export function redactUrlCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]+@/gi, '$1[REDACTED]@');
}

/** The settings as they may be printed (DEBUG): secrets and URL credentials redacted. */
export function printableConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    kentikApiUrl: redactUrlCredentials(config.kentikApiUrl),
    apiKeys: config.apiKeys.map((k) => k.name),
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
