/**
 * Command-line and environment settings of the simulator CLI. Precedence: flag, then
 * environment variable, then a `.env` file in the working directory, then the default.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, parseEnv } from 'node:util';
import { type FaultConfig, DEFAULT_FAULTS, checkFaults, parseErrorRates } from './faults.ts';
import { DEFAULT_EMAIL, DEFAULT_TOKEN, type SimulatorOptions } from './server.ts';

export const DEFAULT_CLI_PORT = 9100;

interface Flag {
  flag: string;
  env: string;
  arg?: string;
  help: string;
  boolean?: boolean;
}

/** Every flag with its environment variable, in --help order. */
export const FLAGS: readonly Flag[] = [
  {
    flag: 'port',
    env: 'SIM_PORT',
    arg: 'N',
    help: `port to listen on (default ${DEFAULT_CLI_PORT}; 0 = any free port)`,
  },
  {
    flag: 'host',
    env: 'SIM_HOST',
    arg: 'ADDR',
    help: 'interface to listen on (default 127.0.0.1)',
  },
  {
    flag: 'email',
    env: 'KT_AUTH_EMAIL',
    arg: 'EMAIL',
    help: `accepted X-CH-Auth-Email (default ${DEFAULT_EMAIL})`,
  },
  {
    flag: 'token',
    env: 'KT_AUTH_TOKEN',
    arg: 'TOKEN',
    help: `accepted X-CH-Auth-API-Token (default ${DEFAULT_TOKEN}); never printed`,
  },
  {
    flag: 'latency',
    env: 'SIM_LATENCY_MS',
    arg: 'MS',
    help: 'fixed latency before every answer (default 0)',
  },
  {
    flag: 'jitter',
    env: 'SIM_JITTER_MS',
    arg: 'MS',
    help: 'plus a uniform random 0..MS (default 0)',
  },
  {
    flag: 'error-rate',
    env: 'SIM_ERROR_RATES',
    arg: 'LIST',
    help: 'error probabilities, e.g. 503=0.1,429=0.05 (statuses 429, 500, 502, 503, 504)',
  },
  {
    flag: 'retry-after',
    env: 'SIM_RETRY_AFTER',
    arg: 'VALUE',
    help: 'Retry-After sent with 429s: seconds or an HTTP date; "none" for no header (default 1)',
  },
  {
    flag: 'rate-limit',
    env: 'SIM_RATE_LIMIT_PER_MINUTE',
    arg: 'N',
    help: 'max calls per sliding 60 s, more get 429 (default 0 = off)',
  },
  {
    flag: 'hang-rate',
    env: 'SIM_HANG_RATE',
    arg: 'P',
    help: 'probability a call is never answered (default 0)',
  },
  {
    flag: 'reset-rate',
    env: 'SIM_RESET_RATE',
    arg: 'P',
    help: 'probability the connection is reset without answer (default 0)',
  },
  {
    flag: 'malformed-json-rate',
    env: 'SIM_MALFORMED_JSON_RATE',
    arg: 'P',
    help: 'probability of a 200 whose body is not JSON (default 0)',
  },
  {
    flag: 'malformed-data-uri-rate',
    env: 'SIM_MALFORMED_DATA_URI_RATE',
    arg: 'P',
    help: 'probability of a 200 with a broken dataUri (default 0)',
  },
  {
    flag: 'seed',
    env: 'SIM_SEED',
    arg: 'N',
    help: `seed of the fault/jitter PRNG (default ${DEFAULT_FAULTS.seed})`,
  },
  {
    flag: 'admin-anywhere',
    env: 'SIM_ADMIN_ANYWHERE',
    boolean: true,
    help: 'serve /admin/* to non-loopback clients too',
  },
  {
    flag: 'quiet',
    env: 'SIM_QUIET',
    boolean: true,
    help: 'no request log (the start line is still printed)',
  },
  { flag: 'help', env: '', boolean: true, help: 'show this help' },
];

export function usage(): string {
  const lines = [
    'Kentik API simulator: POST /api/v5/query/topXchart answered with real charts, plus fault injection.',
    '',
    'Usage: kentik-simulator [options]      (from the repo: npm run simulator -- [options])',
    '',
    'Options (each also read from the environment variable shown, or from ./.env; flags win):',
  ];
  for (const f of FLAGS) {
    const left = `  --${f.flag}${f.arg ? ` ${f.arg}` : ''}`;
    const env = f.env ? `  [${f.env}${f.boolean ? '=1' : ''}]` : '';
    lines.push(`${left.padEnd(34)}${f.help}${env}`);
  }
  lines.push(
    '',
    'Endpoints: POST /api/v5/query/topXchart, GET /healthz, GET /admin/stats, GET|POST /admin/faults,',
    '           POST /admin/script, POST /admin/reset (admin: loopback clients only by default).',
    'Example: npm run simulator -- --latency 2000 --jitter 500 --error-rate 503=0.1,429=0.05 --rate-limit 60',
  );
  return lines.join('\n');
}

export type CliResult =
  | { kind: 'help' }
  | { kind: 'error'; message: string }
  | { kind: 'run'; options: SimulatorOptions & { port: number; host: string }; quiet: boolean };

/** The contents of ./.env (or the given file) as a dictionary; {} if there is none. */
export function readDotEnv(path = join(process.cwd(), '.env')): Record<string, string> {
  if (!existsSync(path)) return {};
  const parsed = parseEnv(readFileSync(path, 'utf8'));
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed)) if (v !== undefined) out[k] = v;
  return out;
}

function truthy(v: string | undefined): boolean {
  return v !== undefined && /^(1|true|yes|on)$/i.test(v.trim());
}

/** Parse argv (without node and script) and an environment (process env over .env). */
export function parseCli(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): CliResult {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
    for (const f of FLAGS) options[f.flag] = { type: f.boolean ? 'boolean' : 'string' };
    options.help = { type: 'boolean', short: 'h' };
    values = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    return { kind: 'error', message: (e as Error).message };
  }
  if (values.help) return { kind: 'help' };

  const get = (flag: string): string | undefined => {
    const v = values[flag];
    if (typeof v === 'string') return v;
    const f = FLAGS.find((x) => x.flag === flag);
    const e = f?.env ? env[f.env] : undefined;
    return e === undefined || e === '' ? undefined : e;
  };
  const bool = (flag: string): boolean => {
    if (values[flag] === true) return true;
    const f = FLAGS.find((x) => x.flag === flag);
    return f?.env ? truthy(env[f.env]) : false;
  };
  const num = (flag: string): number | undefined => {
    const v = get(flag);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n))
      throw new Error(`--${flag} must be a number, got '${v}'`);
    return n;
  };

  try {
    const faults: Record<string, unknown> = {};
    const numeric: Array<[string, keyof FaultConfig]> = [
      ['latency', 'latencyMs'],
      ['jitter', 'jitterMs'],
      ['rate-limit', 'rateLimitPerMinute'],
      ['hang-rate', 'hangRate'],
      ['reset-rate', 'resetRate'],
      ['malformed-json-rate', 'malformedJsonRate'],
      ['malformed-data-uri-rate', 'malformedDataUriRate'],
      ['seed', 'seed'],
    ];
    for (const [flag, key] of numeric) {
      const n = num(flag);
      if (n !== undefined) faults[key] = n;
    }
    const rates = get('error-rate');
    if (rates !== undefined) {
      const parsed = parseErrorRates(rates);
      if (!parsed.ok) throw new Error(`--error-rate: ${parsed.message}`);
      faults.errorRates = parsed.value;
    }
    const retryAfter = get('retry-after');
    if (retryAfter !== undefined)
      faults.retryAfter = retryAfter.toLowerCase() === 'none' ? null : retryAfter;
    const checked = checkFaults(faults);
    if (!checked.ok) throw new Error(checked.message);

    const port = num('port') ?? DEFAULT_CLI_PORT;
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new Error('--port must be from 0 to 65535');
    return {
      kind: 'run',
      quiet: bool('quiet'),
      options: {
        host: get('host') ?? '127.0.0.1',
        port,
        email: get('email') ?? DEFAULT_EMAIL,
        token: get('token') ?? DEFAULT_TOKEN,
        faults: checked.value,
        logger: !bool('quiet'),
        allowRemoteAdmin: bool('admin-anywhere'),
      },
    };
  } catch (e) {
    return { kind: 'error', message: (e as Error).message };
  }
}

/** " — faults: latency 2000 ms + 0..500 ms jitter, errors 503=0.1" or "" when none are set. */
export function faultSummary(f: Partial<FaultConfig>): string {
  const parts: string[] = [];
  if (f.latencyMs || f.jitterMs) {
    parts.push(
      `latency ${f.latencyMs ?? 0} ms${f.jitterMs ? ` + 0..${f.jitterMs} ms jitter` : ''}`,
    );
  }
  const errors = Object.entries(f.errorRates ?? {}).filter(([, r]) => (r ?? 0) > 0);
  if (errors.length) parts.push(`errors ${errors.map(([s, r]) => `${s}=${r}`).join(',')}`);
  if (f.rateLimitPerMinute) parts.push(`rate limit ${f.rateLimitPerMinute}/min`);
  if (f.hangRate) parts.push(`hang ${f.hangRate}`);
  if (f.resetRate) parts.push(`reset ${f.resetRate}`);
  if (f.malformedJsonRate) parts.push(`malformed JSON ${f.malformedJsonRate}`);
  if (f.malformedDataUriRate) parts.push(`malformed dataUri ${f.malformedDataUriRate}`);
  return parts.length ? ` — faults: ${parts.join(', ')}` : '';
}
