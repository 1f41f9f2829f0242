import type { ImageEntry } from '../domain/entry.ts';

/**
 * What every route that answers with a stored image shares (GET /image/{id} and
 * GET /charts/{name}/image): file extensions, the SVG policy, ETag matching and the OpenAPI shape
 * of the answer. One copy, so the security policy cannot drift between the two.
 */

export const EXTENSIONS: Record<ImageEntry['mime'], string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/svg+xml': 'svg',
  'application/pdf': 'pdf',
};

/** An SVG from upstream is a document that could carry script; served this way it cannot run any. */
export const SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

/** Whether an If-None-Match header names this ETag (weak or strong, or `*`). */
export function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

/** OpenAPI: the types an image route may answer with (JSON for errors). */
export const IMAGE_PRODUCES = [
  'image/png',
  'image/jpeg',
  'image/svg+xml',
  'application/pdf',
  'application/json',
];

const binary = { schema: { type: 'string', format: 'binary' } };

/** OpenAPI: a 200 carrying image bytes, and the 304 of a matching If-None-Match. */
export const imageResponses = (description: string) => ({
  200: {
    description,
    content: {
      'image/png': binary,
      'image/jpeg': binary,
      'image/svg+xml': binary,
      'application/pdf': binary,
    },
  },
  304: { description: 'Not modified (If-None-Match matched the ETag)', type: 'null' },
});
