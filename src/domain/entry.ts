import type { QuerySummary } from './query-summary.ts';

/**
 * What the cache knows about one image id. The expiry is absolute (epoch ms) and equals the one
 * encoded in the id, so an entry never outlives the promise its id makes.
 */
interface EntryBase {
  id: string;
  hash: string;
  expiresAt: number;
  createdAt: number;
  /** What the query asks for, in words (absent in entries written before it existed). */
  summary?: QuerySummary;
}

/**
 * A Kentik query as JSON text, as it is sent to Kentik. Kept as text, not as the parsed object,
 * wherever a query waits (pending entries, flights, leases): one flat string instead of a tree of
 * some hundred objects, so a backlog of tens of thousands of queued fetches costs the garbage
 * collector a copy of a few bytes each rather than a walk through each query (that walk was the
 * unique-POST latency tail). A query POSTed to the service is kept in its canonical form.
 */
export type QueryJson = string;

/** Waiting for Kentik. Keeps the query so the fetch can resume after a restart. */
export interface PendingEntry extends EntryBase {
  kind: 'pending';
  query: QueryJson;
}

/** Holds an image; the bytes live in the blob store under their sha256 `digest`. */
export interface ImageEntry extends EntryBase {
  kind: 'image';
  digest: string;
  mime: ImageMime;
  size: number;
  fetchedAt: number;
}

/** The fetch failed; the error is served until the id expires and never shared with new ids. */
export interface ErrorEntry extends EntryBase {
  kind: 'error';
  status: number;
  errorType: string;
  message: string;
}

export type Entry = PendingEntry | ImageEntry | ErrorEntry;

export const IMAGE_MIMES = ['image/png', 'image/jpeg', 'image/svg+xml', 'application/pdf'] as const;
export type ImageMime = (typeof IMAGE_MIMES)[number];

export function isImageMime(mime: string): mime is ImageMime {
  return (IMAGE_MIMES as readonly string[]).includes(mime);
}

/** The names /info has always used for entry kinds. */
export const INFO_TYPE: Record<Entry['kind'], string> = {
  pending: 'api_request',
  image: 'image',
  error: 'api_error',
};
