import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/** The query has no canonical form, so it cannot be hashed: a client error, not a server one. */
export class UncanonicalQueryError extends TypeError {
  override name = 'UncanonicalQueryError';
}

/**
 * sha256 (hex) of the RFC 8785 canonical JSON form of a query. Two queries that differ only in
 * key order or number spelling (1.0 vs 1) hash the same, so they share one upstream call.
 */
export function queryHash(query: unknown): string {
  let canonical: string | undefined;
  try {
    canonical = canonicalize(query);
  } catch (err) {
    // A stack overflow is ours, not the query's (callers cap the depth first): let it through.
    if (err instanceof RangeError) throw err;
    // JSON text can hold what RFC 8785 (I-JSON) cannot: 1e400 parses to Infinity, "\ud800" to a lone surrogate.
    throw new UncanonicalQueryError(`${(err as Error).message} in canonical JSON (RFC 8785)`, {
      cause: err,
    });
  }
  if (canonical === undefined)
    throw new UncanonicalQueryError('the query cannot be represented as JSON');
  return createHash('sha256').update(canonical).digest('hex');
}

/** sha256 (hex) of raw bytes: the content address of a stored image. */
export function bytesDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
