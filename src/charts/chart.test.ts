import { describe, expect, it } from 'vitest';
import {
  decodeDefinition,
  decodeState,
  dueTime,
  encodeDefinition,
  encodeState,
  isChartName,
  refreshTtl,
  retryDelayMs,
} from './chart.ts';

describe('chart names', () => {
  it.each(['a', 'A.b_c-9', 'x'.repeat(100), '...', '.hidden', '-'])('accepts %s', (n) =>
    expect(isChartName(n)).toBe(true),
  );
  it.each(['', 'x'.repeat(101), '.', '..', 'a/b', 'a b', 'été', 'a\nb', 'a:b', '../x'])(
    'rejects %j',
    (n) => expect(isChartName(n)).toBe(false),
  );
});

describe('refresh arithmetic', () => {
  it('ids outlive the refresh period by max(refresh, grace), capped at MAX_TTL', () => {
    expect(refreshTtl(300, 3600, 604_800)).toBe(3900);
    expect(refreshTtl(86_400, 3600, 604_800)).toBe(172_800);
    expect(refreshTtl(500_000, 3600, 604_800)).toBe(604_800);
    expect(refreshTtl(60, 0, 604_800)).toBe(120);
  });

  it('an image falls due after refresh, or after REUSE_WINDOW when that is longer', () => {
    expect(dueTime(1000, 300, 60)).toBe(1000 + 300_000);
    expect(dueTime(1000, 60, 60)).toBe(1000 + 61_000);
    expect(dueTime(1000, 60, 0)).toBe(1000 + 60_000);
  });

  it('retries back off from one refresh period, doubling, capped at max(refresh, 1 h)', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => retryDelayMs(300, n) / 1000)).toEqual([
      300, 600, 1200, 2400, 3600, 3600, 3600, 3600,
    ]);
    expect(retryDelayMs(86_400, 5)).toBe(86_400_000);
    expect(retryDelayMs(60, 1000)).toBe(3_600_000);
  });
});

describe('chart codec', () => {
  const def = {
    name: 'c',
    query: { a: 1 },
    refresh: 300,
    createdAt: 1,
    updatedAt: 2,
    generation: 'g1',
  };
  it('round-trips definitions and states', () => {
    expect(decodeDefinition(encodeDefinition(def))).toEqual(def);
    const state = {
      generation: 'g1',
      image: { imageId: 'i', digest: 'd', mime: 'image/png' as const, fetchedAt: 3 },
      dueAt: 4,
      lastAttemptAt: 5,
      lastError: { status: 500, type: 't', message: 'm', at: 6 },
      failures: 2,
      retryAt: 7,
    };
    expect(decodeState(encodeState(state))).toEqual(state);
  });
  it.each([
    ['not JSON', '{'],
    ['another version', JSON.stringify({ ...def, v: 2 })],
    ['a bad name', JSON.stringify({ ...def, v: 1, name: '../x' })],
    ['a query that is not an object', JSON.stringify({ ...def, v: 1, query: [1] })],
    ['a fractional refresh', JSON.stringify({ ...def, v: 1, refresh: 1.5 })],
  ])('rejects a definition with %s', (_l, text) => expect(() => decodeDefinition(text)).toThrow());
});
