import { isImageMime, type ImageMime } from '../domain/entry.ts';

export interface DecodedImage {
  mime: ImageMime;
  bytes: Buffer;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Decodes `data:<mime>;base64,<data>` strictly: Node's base64 decoder skips invalid characters
 * silently, which would turn a garbled answer into a garbled image, so the alphabet is checked first.
 * Returns a reason string when the URI is unusable.
 */
export function decodeDataUri(uri: unknown): DecodedImage | string {
  if (typeof uri !== 'string') return 'dataUri is missing or not a string';
  const comma = uri.indexOf(',');
  if (!uri.startsWith('data:') || comma < 0)
    return 'dataUri does not start with "data:<mime>;base64,"';
  const header = uri
    .slice(5, comma)
    .split(';')
    .map((s) => s.trim().toLowerCase());
  const mime = header[0] === 'image/jpg' ? 'image/jpeg' : (header[0] ?? '');
  if (!header.includes('base64')) return 'dataUri is not base64-encoded';
  if (!isImageMime(mime))
    return `dataUri has unsupported mime type ${JSON.stringify(mime.slice(0, 50))}`;
  const data = uri.slice(comma + 1).replace(/\s+/g, '');
  if (data.length === 0 || data.length % 4 !== 0 || !BASE64.test(data))
    return 'dataUri has invalid base64 data';
  const bytes = Buffer.from(data, 'base64');
  if (bytes.length === 0) return 'dataUri holds no data';
  if (!looksLike(mime, bytes)) return `dataUri data is not a ${mime} file`;
  return { mime, bytes };
}

/** A cheap magic-number check so a mislabelled answer is never served under the wrong type. */
function looksLike(mime: ImageMime, b: Buffer): boolean {
  switch (mime) {
    case 'image/png':
      return b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    case 'image/jpeg':
      return b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
    case 'application/pdf':
      return b.subarray(0, 5).toString('latin1') === '%PDF-';
    case 'image/svg+xml': {
      const head = b.subarray(0, 1024).toString('utf8');
      return (
        /<svg[\s>]/i.test(head) || (/^\s*(<\?xml|<!--|<!DOCTYPE)/i.test(head) && b.includes('<svg'))
      );
    }
  }
}
