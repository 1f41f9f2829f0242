/**
 * The simulator's own copy of the query hash the cache uses (sha256 of the RFC 8785 canonical
 * JSON form), so its per-query call counters line up with the cache's ids without either package
 * importing the other's source.
 */
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/** sha256 (hex) of the RFC 8785 canonical JSON form of `value`. */
export function queryHash(value: unknown): string {
  const canonical = canonicalize(value);
  if (canonical === undefined) throw new TypeError('the value cannot be represented as JSON');
  return createHash('sha256').update(canonical).digest('hex');
}

/** sha256 (hex) of raw bytes. */
export function bytesDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
