import { describe, expect, it } from 'vitest';
import { type Decision, FaultEngine, checkFaults, checkScript, parseErrorRates } from './faults.ts';
import { MALFORMED_DATA_URI_KINDS, malformedDataUriBody } from './malformed.ts';

const kinds = (e: FaultEngine, n: number, t = 0): string[] =>
  Array.from({ length: n }, () => {
    const d: Decision = e.decide(t);
    return d.kind === 'status' ? String(d.status) : d.kind;
  });

describe('FaultEngine', () => {
  it('is deterministic for a seed and differs between seeds', () => {
    const cfg = { errorRates: { 503: 0.3, 429: 0.1 }, hangRate: 0.05 };
    const a = kinds(new FaultEngine({ ...cfg, seed: 7 }), 200);
    expect(kinds(new FaultEngine({ ...cfg, seed: 7 }), 200)).toEqual(a);
    expect(kinds(new FaultEngine({ ...cfg, seed: 8 }), 200)).not.toEqual(a);
  });

  it('draws each fault with its probability', () => {
    const got = kinds(new FaultEngine({ errorRates: { 503: 0.3 }, resetRate: 0.1, seed: 3 }), 5000);
    const share = (k: string): number => got.filter((x) => x === k).length / got.length;
    expect(share('503')).toBeGreaterThan(0.26);
    expect(share('503')).toBeLessThan(0.34);
    expect(share('reset')).toBeGreaterThan(0.08);
    expect(share('reset')).toBeLessThan(0.12);
    expect(share('ok')).toBeGreaterThan(0.56);
  });

  it('runs the script first, then the rate limiter, then rates', () => {
    const e = new FaultEngine({ errorRates: { 500: 1 }, rateLimitPerMinute: 1 });
    e.script([{ kind: 'ok' }, { kind: 'status', status: 418 }]);
    expect(kinds(e, 4)).toEqual(['ok', '418', '500', '429']);
  });

  it('rate limit: a sliding 60 s window', () => {
    const e = new FaultEngine({ rateLimitPerMinute: 2, retryAfter: '5' });
    expect(e.decide(0).kind).toBe('ok');
    expect(e.decide(10_000).kind).toBe('ok');
    expect(e.decide(20_000)).toMatchObject({ kind: 'status', status: 429, retryAfter: '5' });
    expect(e.decide(59_999).kind).toBe('status');
    expect(e.decide(60_000).kind).toBe('ok'); // the call at 0 left the window
    expect(e.decide(60_001).kind).toBe('status');
    expect(e.decide(70_000).kind).toBe('ok');
  });

  it('Retry-After: config for 429s (null = none), scripted value wins', () => {
    expect(new FaultEngine({ errorRates: { 429: 1 } }).decide(0)).toMatchObject({
      retryAfter: '1',
    });
    expect(new FaultEngine({ errorRates: { 429: 1 }, retryAfter: null }).decide(0)).toMatchObject({
      retryAfter: null,
    });
    expect(new FaultEngine({ errorRates: { 503: 1 } }).decide(0)).toMatchObject({
      retryAfter: null,
    });
    const e = new FaultEngine();
    e.script([{ kind: 'status', status: 503, retryAfter: '120' }]);
    expect(e.decide(0)).toMatchObject({ status: 503, retryAfter: '120' });
  });

  it('latency plus jitter stays within bounds', () => {
    const e = new FaultEngine({ latencyMs: 100, jitterMs: 50 });
    const delays = Array.from({ length: 500 }, () => e.delayMs());
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(100);
    expect(Math.max(...delays)).toBeLessThanOrEqual(150);
    expect(new Set(delays).size).toBeGreaterThan(10);
  });

  it('set merges; reset returns to the start options', () => {
    const e = new FaultEngine({ latencyMs: 5, errorRates: { 503: 0.5 } });
    e.set({ errorRates: { 429: 0.2 }, hangRate: 0.1 });
    expect(e.config).toMatchObject({
      latencyMs: 5,
      hangRate: 0.1,
      errorRates: { 503: 0.5, 429: 0.2 },
    });
    e.script([{ kind: 'hang' }]);
    e.reset();
    expect(e.queued).toBe(0);
    expect(e.config).toMatchObject({ latencyMs: 5, hangRate: 0, errorRates: { 503: 0.5 } });
    expect(e.config.errorRates).not.toHaveProperty('429');
  });

  it('malformed variants cycle', () => {
    const e = new FaultEngine({ malformedDataUriRate: 1 });
    const variants = Array.from({ length: 5 }, () => e.decide(0)).map((d) =>
      d.kind === 'malformed-data-uri' ? d.variant : -1,
    );
    expect(variants).toEqual([0, 1, 2, 3, 4]);
    expect(MALFORMED_DATA_URI_KINDS.map((_, i) => malformedDataUriBody(i).kind)).toEqual([
      ...MALFORMED_DATA_URI_KINDS,
    ]);
    expect(malformedDataUriBody(MALFORMED_DATA_URI_KINDS.length).kind).toBe(
      MALFORMED_DATA_URI_KINDS[0],
    );
  });
});

describe('config parsing', () => {
  it('parseErrorRates', () => {
    expect(parseErrorRates('503=0.1,429=0.05')).toEqual({
      ok: true,
      value: { 503: 0.1, 429: 0.05 },
    });
    expect(parseErrorRates(' 502:1 ')).toEqual({ ok: true, value: { 502: 1 } });
    expect(parseErrorRates('')).toEqual({ ok: true, value: {} });
    expect(parseErrorRates('418=0.1').ok).toBe(false);
    expect(parseErrorRates('503=2').ok).toBe(false);
    expect(parseErrorRates('503').ok).toBe(false);
  });

  it('checkFaults accepts JSON forms and rejects bad values', () => {
    expect(checkFaults({ errorRates: { '503': 0.5 }, retryAfter: null, seed: 3 })).toEqual({
      ok: true,
      value: { errorRates: { 503: 0.5 }, retryAfter: null, seed: 3 },
    });
    for (const bad of [
      { latencyMs: -1 },
      { hangRate: 1.5 },
      { errorRates: { '404': 0.1 } },
      { rateLimitPerMinute: 2.5 },
      { retryAfter: 'a\r\nX-Evil: 1' },
      { surprise: true },
      [],
    ]) {
      expect(checkFaults(bad).ok, JSON.stringify(bad)).toBe(false);
    }
  });

  it('checkScript', () => {
    expect(
      checkScript([{ kind: 'hang' }, { kind: 'status', status: 429, retryAfter: '3' }]).ok,
    ).toBe(true);
    expect(checkScript([{ kind: 'svg-raw' }]).ok).toBe(false);
    expect(checkScript([{ kind: 'status', status: 99 }]).ok).toBe(false);
    expect(checkScript({}).ok).toBe(false);
  });
});
