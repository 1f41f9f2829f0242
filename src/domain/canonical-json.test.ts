import canonicalize from 'canonicalize';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, NotCanonicalError } from './canonical-json.ts';

describe('canonicalJson', () => {
  it('writes the same text as the canonicalize package for anything JSON.parse makes', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        // Through JSON text, as a request body arrives (fc.jsonValue also makes -0).
        const parsed = JSON.parse(JSON.stringify(value)) as unknown;
        expect(canonicalJson(parsed)).toBe(canonicalize(parsed));
      }),
      { numRuns: 2000 },
    );
  });

  it('sorts keys by UTF-16 code units and writes numbers the ECMAScript way', () => {
    expect(
      canonicalJson({ b: 1, a: [1.0, 1e21, 0.000001, -0], é: 'x', Z: null, '\ud83d\ude00': true }),
    ).toBe('{"Z":null,"a":[1,1e+21,0.000001,0],"b":1,"é":"x","😀":true}');
    expect(canonicalJson('\u2028"\\\u0007')).toBe(canonicalize('\u2028"\\\u0007'));
  });

  it('refuses what RFC 8785 cannot hold, as the package does', () => {
    for (const bad of [
      Number.NaN,
      Number.POSITIVE_INFINITY,
      { a: [Number.NEGATIVE_INFINITY] },
      { s: '\ud800' },
      ['x\udc00'],
    ]) {
      expect(() => canonicalJson(bad)).toThrow(NotCanonicalError);
      expect(() => canonicalize(bad)).toThrow();
    }
  });

  it('hands what JSON.parse never makes to the package (toJSON, undefined members, instances)', () => {
    const withToJson = { when: new Date(0), skip: undefined, n: 1 };
    expect(canonicalJson(withToJson)).toBe(canonicalize(withToJson));
    expect(() => canonicalJson(undefined)).toThrow(NotCanonicalError);
  });
});
