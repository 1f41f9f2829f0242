import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, readEnv } from './config.ts';

const base = { KT_AUTH_EMAIL: 'a@b.c', KT_AUTH_TOKEN: 'tok-SECRET', CACHE_PATH: '/tmp/x' };

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig(base);
    expect(c).toMatchObject({
      kentikApiUrl: 'https://api.kentik.com/api/v5',
      kentikApiRetries: 3,
      kentikApiTimeoutMs: 60_000,
      defaultTtl: 300,
      entryWaitTimeoutMs: 185_000,
      maintenancePeriodMs: 60_000,
      host: '127.0.0.1',
      port: 8000,
      maxTtl: 604_800,
      reuseWindow: 60,
      kentikApiConcurrency: 4,
      cacheMaxBytes: undefined,
      debug: false,
      cacheBackend: 'filesystem',
      redisUrl: undefined,
      redisKeyPrefix: 'kic:',
      flightLease: 10,
    });
  });

  it('redis backend: REDIS_URL required, CACHE_PATH not; the password never shows', () => {
    const redisBase = { KT_AUTH_EMAIL: 'a@b.c', KT_AUTH_TOKEN: 't', CACHE_BACKEND: 'redis' };
    const c = loadConfig({ ...redisBase, REDIS_URL: 'redis://:pw-SECRET@redis:6379/2' });
    expect(c).toMatchObject({ cacheBackend: 'redis', cachePath: '' });
    expect(c.redisUrl?.reveal()).toBe('redis://:pw-SECRET@redis:6379/2');
    expect(JSON.stringify(c)).not.toContain('pw-SECRET');
    expect(inspect(c)).not.toContain('pw-SECRET');
    expect(() => loadConfig(redisBase)).toThrow(/REDIS_URL is required/);
    for (const bad of [
      'http://:pw-SECRET@redis:6379',
      'redis://:pw-SECRET@redis:6379/db',
      'not a url pw-SECRET',
      'redis://:pw-SECRET@redis:6379/?x=1',
    ]) {
      let err: unknown;
      try {
        loadConfig({ ...redisBase, REDIS_URL: bad, FLIGHT_LEASE: '0', CACHE_BACKEND: 'redis' });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      const text = (err as ConfigError).message;
      expect(text).toContain('REDIS_URL');
      expect(text).toContain('FLIGHT_LEASE');
      expect(text).not.toContain('pw-SECRET');
    }
    expect(() => loadConfig({ ...base, CACHE_BACKEND: 'memcached' })).toThrow(/CACHE_BACKEND/);
    expect(() => loadConfig({ ...base, REDIS_KEY_PREFIX: 'has space' })).toThrow(
      /REDIS_KEY_PREFIX/,
    );
  });

  it('lists every problem at once', () => {
    let err: unknown;
    try {
      loadConfig({
        KENTIK_API_RETRIES: 'three',
        PORT: '70000',
        DEFAULT_TTL: '0',
        KENTIK_API_URL: 'ftp://x',
        DEBUG: 'maybe',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join('\n');
    for (const name of [
      'KT_AUTH_EMAIL',
      'KT_AUTH_TOKEN',
      'CACHE_PATH',
      'KENTIK_API_RETRIES',
      'PORT',
      'DEFAULT_TTL',
      'KENTIK_API_URL',
      'DEBUG',
    ]) {
      expect(problems).toContain(name);
    }
  });

  it('never shows the token', () => {
    const c = loadConfig(base);
    expect(JSON.stringify(c)).not.toContain('tok-SECRET');
    expect(inspect(c)).not.toContain('tok-SECRET');
    expect(`${c.ktAuthToken}`).not.toContain('tok-SECRET');
    expect(c.ktAuthToken.reveal()).toBe('tok-SECRET');
  });

  it('reads .env under the environment', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kic-env-'));
    writeFileSync(path.join(dir, '.env'), 'KT_AUTH_EMAIL=file@x\nPORT=1234\n');
    const env = readEnv(dir, { PORT: '999' });
    expect(env.KT_AUTH_EMAIL).toBe('file@x');
    expect(env.PORT).toBe('999');
  });
});
