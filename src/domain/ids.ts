/** `<sha256 hex>_<expiry epoch seconds[.fraction]>`, checked before an id touches a path or key. */
export const ID_PATTERN = /^[0-9a-f]{64}_\d{1,12}(\.\d{1,9})?$/;
export const ID_PATTERN_SOURCE = '^[0-9a-f]{64}_\\d+(\\.\\d+)?$';

export interface ParsedId {
  id: string;
  hash: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

export function parseId(id: string): ParsedId | undefined {
  if (id.length > 64 + 1 + 12 + 1 + 9 || !ID_PATTERN.test(id)) return undefined;
  const expiresAt = Math.round(Number(id.slice(65)) * 1000);
  if (!Number.isSafeInteger(expiresAt)) return undefined;
  return { id, hash: id.slice(0, 64), expiresAt };
}

/** Millisecond precision, written as seconds with three decimals, e.g. `…_1620973821.284`. */
export function formatId(hash: string, expiresAtMs: number): string {
  return `${hash}_${(Math.round(expiresAtMs) / 1000).toFixed(3)}`;
}
