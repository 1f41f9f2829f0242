import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FLAGS, faultSummary, parseCli, readDotEnv, usage } from './args.ts';

function run(argv: string[], env: Record<string, string> = {}) {
  const r = parseCli(argv, env);
  if (r.kind !== 'run') throw new Error(r.kind === 'error' ? r.message : 'help');
  return r;
}

describe('parseCli', () => {
  it('defaults', () => {
    const r = run([]);
    expect(r.options).toMatchObject({
      host: '127.0.0.1',
      port: 9100,
      email: 'demo@example.com',
      token: 'demo-token',
      faults: {},
      logger: true,
      allowRemoteAdmin: false,
    });
    expect(r.quiet).toBe(false);
  });

  it('reads every fault flag', () => {
    const r = run([
      '--port',
      '9200',
      '--host',
      '0.0.0.0',
      '--email',
      'x@example.com',
      '--token',
      'y',
      '--latency',
      '2000',
      '--jitter',
      '500',
      '--error-rate',
      '503=0.1,429=0.05',
      '--retry-after',
      '1',
      '--rate-limit',
      '60',
      '--hang-rate',
      '0.01',
      '--reset-rate',
      '0.02',
      '--malformed-json-rate',
      '0.03',
      '--malformed-data-uri-rate',
      '0.04',
      '--seed',
      '9',
      '--quiet',
      '--admin-anywhere',
    ]);
    expect(r.options).toMatchObject({
      host: '0.0.0.0',
      port: 9200,
      email: 'x@example.com',
      token: 'y',
      logger: false,
      allowRemoteAdmin: true,
    });
    expect(r.options.faults).toEqual({
      latencyMs: 2000,
      jitterMs: 500,
      errorRates: { 503: 0.1, 429: 0.05 },
      retryAfter: '1',
      rateLimitPerMinute: 60,
      hangRate: 0.01,
      resetRate: 0.02,
      malformedJsonRate: 0.03,
      malformedDataUriRate: 0.04,
      seed: 9,
    });
    expect(r.quiet).toBe(true);
  });

  it('falls back to environment variables; flags win', () => {
    const env = {
      KT_AUTH_EMAIL: 'env@example.com',
      KT_AUTH_TOKEN: 'env-token',
      SIM_LATENCY_MS: '300',
      SIM_ERROR_RATES: '502=0.5',
      SIM_RETRY_AFTER: 'none',
      SIM_PORT: '9300',
      SIM_QUIET: '1',
    };
    const r = run(['--latency', '100'], env);
    expect(r.options).toMatchObject({
      email: 'env@example.com',
      token: 'env-token',
      port: 9300,
      logger: false,
    });
    expect(r.options.faults).toEqual({
      latencyMs: 100,
      errorRates: { 502: 0.5 },
      retryAfter: null,
    });
  });

  it('reports bad input', () => {
    for (const argv of [
      ['--latency', 'soon'],
      ['--error-rate', '418=1'],
      ['--hang-rate', '3'],
      ['--port', '70000'],
      ['--nope'],
      ['extra'],
    ]) {
      const r = parseCli(argv, {});
      expect(r.kind, argv.join(' ')).toBe('error');
    }
    expect(parseCli(['--help'], {}).kind).toBe('help');
    expect(parseCli(['-h'], {}).kind).toBe('help');
  });

  it('usage lists every flag and environment variable', () => {
    const text = usage();
    for (const f of FLAGS) {
      expect(text).toContain(`--${f.flag}`);
      if (f.env) expect(text).toContain(f.env);
    }
  });

  it('summarises faults without secrets', () => {
    expect(faultSummary({})).toBe('');
    expect(
      faultSummary({
        latencyMs: 2000,
        jitterMs: 500,
        errorRates: { 503: 0.1 },
        rateLimitPerMinute: 60,
      }),
    ).toBe(' — faults: latency 2000 ms + 0..500 ms jitter, errors 503=0.1, rate limit 60/min');
  });
});

describe('readDotEnv', () => {
  it('parses a .env file; missing file gives {}', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-env-'));
    const file = join(dir, '.env');
    writeFileSync(
      file,
      '# comment\nKT_AUTH_EMAIL=file@example.com\nKT_AUTH_TOKEN="quoted token"\n',
    );
    expect(readDotEnv(file)).toEqual({
      KT_AUTH_EMAIL: 'file@example.com',
      KT_AUTH_TOKEN: 'quoted token',
    });
    expect(readDotEnv(join(dir, 'missing.env'))).toEqual({});
    // The CLI passes {...dotEnv, ...process.env}: the environment wins.
    const r = run([], { ...readDotEnv(file), KT_AUTH_TOKEN: 'from-env' });
    expect(r.options).toMatchObject({ email: 'file@example.com', token: 'from-env' });
  });
});
