import { createHash } from 'node:crypto';
import { canonicalJson, NotCanonicalError } from './canonical-json.ts';

/** The query has no canonical form, so it cannot be hashed: a client error, not a server one. */
export class UncanonicalQueryError extends TypeError {
  override name = 'UncanonicalQueryError';
}

/** A query's canonical JSON text (RFC 8785) and the sha256 (hex) of that text. */
export interface CanonicalQuery {
  hash: string;
  json: string;
}

/**
 * sha256 (hex) of the RFC 8785 canonical JSON form of a query. Two queries that differ only in
 * key order or number spelling (1.0 vs 1) hash the same, so they share one upstream call.
 */
export function queryHash(query: unknown): string {
  return canonicalQuery(query).hash;
}

/** The canonical JSON text of a query and its hash (see queryHash); the text is what gets stored. */
export function canonicalQuery(query: unknown): CanonicalQuery {
  let canonical: string;
  try {
    canonical = canonicalJson(query);
  } catch (err) {
    // A stack overflow is ours, not the query's (callers cap the depth first): let it through.
    if (!(err instanceof NotCanonicalError)) throw err;
    // JSON text can hold what RFC 8785 (I-JSON) cannot: 1e400 parses to Infinity, "\ud800" to a lone surrogate.
    throw new UncanonicalQueryError(`${err.message} in canonical JSON (RFC 8785)`, {
      cause: err,
    });
  }
  return { hash: createHash('sha256').update(canonical).digest('hex'), json: canonical };
}

/** sha256 (hex) of raw bytes: the content address of a stored image. */
export function bytesDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
