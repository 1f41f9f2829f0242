import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeDataUri } from './data-uri.ts';
import { parseRetryAfter } from './retry-after.ts';

const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);
const uri = (mime: string, b: Buffer | string): string =>
  `data:${mime};base64,${Buffer.from(b).toString('base64')}`;

describe('decodeDataUri', () => {
  it('decodes each supported type', () => {
    expect(decodeDataUri(uri('image/png', png))).toEqual({ mime: 'image/png', bytes: png });
    expect(decodeDataUri(uri('image/jpg', Buffer.from([0xff, 0xd8, 0xff, 0xe0])))).toMatchObject({
      mime: 'image/jpeg',
    });
    expect(
      decodeDataUri(
        uri('image/svg+xml', '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>'),
      ),
    ).toMatchObject({ mime: 'image/svg+xml' });
    expect(decodeDataUri(uri('application/pdf', '%PDF-1.4 ...'))).toMatchObject({
      mime: 'application/pdf',
    });
  });
  it.each([
    [undefined, 'missing'],
    [42, 'missing'],
    ['image/png;base64,AAAA', 'does not start'],
    ['data:image/png,AAAA', 'not base64'],
    ['data:image/bmp;base64,AAAA', 'unsupported mime'],
    ['data:image/png;base64,@@@@', 'invalid base64'],
    ['data:image/png;base64,AAA', 'invalid base64'],
    ['data:image/png;base64,iVBO-w0K', 'invalid base64'], // base64url, which Node would accept
    ['data:image/png;base64,iVBO_w0K', 'invalid base64'],
    ['data:image/png;base64,iV==Rw0K', 'invalid base64'],
    ['data:image/png;base64,iVBORw0K@AAA', 'invalid base64'],
    ['data:image/png;base64,iVBORw0KG===', 'invalid base64'],
    ['data:image/png;base64,', 'invalid base64'],
    [uri('image/png', 'GIF89a not a png'), 'not a image/png'],
    [uri('image/svg+xml', '<html><script>alert(1)</script></html>'), 'not a image/svg+xml'],
  ])('rejects %j', (input, reason) => {
    expect(decodeDataUri(input)).toEqual(expect.stringContaining(reason));
  });

  it('accepts exactly what the strict base64 alphabet accepts', () => {
    const STRICT = /^[A-Za-z0-9+/]*={0,2}$/;
    const text = fc
      .array(fc.constantFrom('A', 'B', 'i', 'V', '0', '+', '/', '=', '-', '_', '@', 'é', '.'), {
        minLength: 1,
        maxLength: 16,
      })
      .map((cs) => cs.join(''));
    fc.assert(
      fc.property(text, (data) => {
        const strict = data.length % 4 === 0 && STRICT.test(data);
        const got = decodeDataUri(`data:image/png;base64,${data}`);
        // Valid base64 fails later (no PNG signature): only the base64 verdict is compared here.
        expect(got === 'dataUri has invalid base64 data').toBe(!strict);
      }),
      { numRuns: 20_000 },
    );
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('reads delta-seconds and HTTP dates', () => {
    expect(parseRetryAfter('3', now)).toBe(3000);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:07 GMT', now)).toBe(7000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now)).toBe(0);
  });
  it('ignores what it cannot read', () => {
    for (const v of [undefined, '', '-1', '1.5', 'soon', '12abc'])
      expect(parseRetryAfter(v, now)).toBeUndefined();
  });
});
