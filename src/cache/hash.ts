import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/**
 * sha256 (hex) of the RFC 8785 canonical JSON form of a query. Two queries that differ only in
 * key order or number spelling (1.0 vs 1) hash the same, so they share one upstream call.
 */
export function queryHash(query: unknown): string {
  const canonical = canonicalize(query);
  if (canonical === undefined) throw new TypeError('query cannot be represented as JSON');
  return createHash('sha256').update(canonical).digest('hex');
}

/** sha256 (hex) of raw bytes: the content address of a stored image. */
export function bytesDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
