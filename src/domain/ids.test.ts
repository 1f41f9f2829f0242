import { describe, expect, it } from 'vitest';
import { queryHash } from './hash.ts';
import { formatId, parseId } from './ids.ts';

describe('image ids', () => {
  const h = 'a'.repeat(64);
  it('formats expiry as epoch seconds with milliseconds and parses it back', () => {
    const id = formatId(h, 1620973821284);
    expect(id).toBe(`${h}_1620973821.284`);
    expect(parseId(id)).toEqual({ id, hash: h, expiresAt: 1620973821284 });
    expect(parseId(`${h}_1620973821`)?.expiresAt).toBe(1620973821000);
  });
  it.each([
    '',
    'x',
    `${h}`,
    `${h}_`,
    `${h.toUpperCase()}_1`,
    `${h}_1.`,
    `${h}_-1`,
    `${h}_1e9`,
    `${h}_1/../../etc`,
    `../${h}_1`,
    `${h}_1\u0000`,
    `${h}_${'9'.repeat(40)}`,
  ])('rejects %j', (bad) => expect(parseId(bad)).toBeUndefined());
});

describe('query hash (RFC 8785)', () => {
  it('ignores key order and number spelling', () => {
    expect(queryHash({ b: [1.0, { y: 2, x: 1 }], a: 'é' })).toBe(
      queryHash({ a: 'é', b: [1, { x: 1, y: 2 }] }),
    );
  });
  it('distinguishes different queries', () => {
    expect(queryHash({ a: 1 })).not.toBe(queryHash({ a: 2 }));
    expect(queryHash({ a: [1, 2] })).not.toBe(queryHash({ a: [2, 1] }));
  });
  it('is sha256 hex', () =>
    expect(queryHash({})).toBe('44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'));
});
