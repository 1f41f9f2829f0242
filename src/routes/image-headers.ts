import type { ServerResponse } from 'node:http';
import type { ImageEntry } from '../domain/entry.ts';
import { EXTENSIONS, matchesEtag, SVG_CSP } from './image-response.ts';

/**
 * The headers of a cached image, as `res.writeHead` takes them (name, value, name, value…). Both
 * ways GET /image/{id} is answered use them: the route (images.ts) and the hot path
 * (hot-image.ts), so the two cannot drift apart. A hot image is served thousands of times a
 * second: the lists are built once per entry (entries are immutable, so the entry object is the
 * key and they go when it does) and only `cache-control` is rebuilt, when the whole seconds left
 * change.
 */
export interface ImageHeaders {
  /** The quoted ETag, for If-None-Match. */
  etag: string;
  /** A 200: every header, content-type and content-length last. */
  ok: string[];
  /** A 304: the same without content-type and content-length. */
  notModified: string[];
}

interface Built extends ImageHeaders {
  maxAge: number;
}

const built = new WeakMap<ImageEntry, Built>();
/** Where `cache-control`'s value sits in both lists. */
const CACHE_CONTROL = 3;

export function imageHeaders(
  entry: ImageEntry,
  id: string,
  size: number,
  now: number,
): ImageHeaders {
  const maxAge = Math.max(0, Math.floor((entry.expiresAt - now) / 1000));
  let h = built.get(entry);
  if (!h) {
    const etag = `"${entry.digest}"`;
    const notModified = [
      'etag',
      etag,
      'cache-control',
      `public, max-age=${maxAge}`,
      'expires',
      new Date(entry.expiresAt).toUTCString(),
      'x-content-type-options',
      'nosniff',
      'content-disposition',
      `inline; filename="${id}.${EXTENSIONS[entry.mime]}"`,
      // An SVG from upstream is a document that could carry script.
      ...(entry.mime === 'image/svg+xml' ? ['content-security-policy', SVG_CSP] : []),
    ];
    const ok = [...notModified, 'content-type', entry.mime, 'content-length', String(size)];
    h = { etag, ok, notModified, maxAge };
    built.set(entry, h);
  } else if (h.maxAge !== maxAge) {
    h.maxAge = maxAge;
    h.ok[CACHE_CONTROL] = h.notModified[CACHE_CONTROL] = `public, max-age=${maxAge}`;
  }
  return h;
}

/**
 * Answers with a cached image on the raw response: 304 when If-None-Match names its ETag, else 200
 * with the bytes (none for HEAD). The one writer of both ways GET /image/{id} is answered: through
 * fastify's `send`, each of the hundreds of GETs a fan-in wakes at once would pay for header
 * objects and the onSend chain again; the route's onResponse hook (log line, metrics) still runs.
 */
export function writeImage(
  res: ServerResponse,
  request: { method?: string | undefined; ifNoneMatch: string | undefined },
  image: { entry: ImageEntry; id: string; bytes: Buffer },
  now: number,
): 200 | 304 {
  const h = imageHeaders(image.entry, image.id, image.bytes.length, now);
  if (request.ifNoneMatch !== undefined && matchesEtag(request.ifNoneMatch, h.etag)) {
    res.writeHead(304, h.notModified);
    res.end();
    return 304;
  }
  res.writeHead(200, h.ok);
  if (request.method === 'HEAD') res.end();
  else res.end(image.bytes);
  return 200;
}
