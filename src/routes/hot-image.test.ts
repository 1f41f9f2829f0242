import { describe, expect, it } from 'vitest';
import { ifNoneMatch } from './hot-image.ts';

describe('ifNoneMatch (the hot path reads the one header it needs from rawHeaders)', () => {
  it('finds it whatever the case of its name', () => {
    expect(ifNoneMatch(['Host', 'x', 'If-None-Match', '"a"'])).toBe('"a"');
    expect(ifNoneMatch(['IF-NONE-MATCH', '"b"'])).toBe('"b"');
  });
  it('joins repeated headers with ", " as req.headers does', () => {
    expect(ifNoneMatch(['if-none-match', '"a"', 'accept', '*/*', 'If-None-Match', '"b"'])).toBe(
      '"a", "b"',
    );
  });
  it('is undefined when absent, and a same-length other name does not match', () => {
    expect(ifNoneMatch([])).toBeUndefined();
    expect(ifNoneMatch(['host', 'x', 'if-none-matcx', '"a"'])).toBeUndefined();
  });
});
