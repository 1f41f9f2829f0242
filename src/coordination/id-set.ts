/**
 * A set of ids, as small as its size allows: most queries and most images have one id, and a
 * Set for it would cost ~200 bytes; ten ids in a Set ~560, in an array ~180. An array grows into
 * a Set at IDS_AS_ARRAY, where searching it would cost more than the memory saved. Changed only
 * through these functions, which return the value to keep.
 */
export type Ids = undefined | string | string[] | Set<string>;
const IDS_AS_ARRAY = 16;

/** `ids` with `id`. */
export function addId(ids: Ids, id: string): Ids {
  if (ids === undefined || ids === id) return id;
  if (typeof ids === 'string') return [ids, id];
  if (Array.isArray(ids)) {
    if (ids.includes(id)) return ids;
    if (ids.length < IDS_AS_ARRAY) {
      ids.push(id);
      return ids;
    }
    return new Set(ids).add(id);
  }
  return ids.add(id);
}

/** `ids` without `id`; undefined once empty. */
export function removeId(ids: Ids, id: string): Ids {
  if (ids === undefined || ids === id) return undefined;
  if (typeof ids === 'string') return ids;
  if (Array.isArray(ids)) {
    const i = ids.indexOf(id);
    if (i >= 0) ids.splice(i, 1);
    return ids.length === 0 ? undefined : ids.length === 1 ? ids[0] : ids;
  }
  ids.delete(id);
  return ids.size > 1 ? ids : ids.size === 1 ? ids.values().next().value : undefined;
}

export function idCount(ids: Ids): number {
  if (ids === undefined) return 0;
  if (typeof ids === 'string') return 1;
  return Array.isArray(ids) ? ids.length : ids.size;
}

/** For iterating, not changing: the ids as they are held, or in an array. */
export function eachId(ids: Ids): Iterable<string> {
  if (ids === undefined) return [];
  if (typeof ids === 'string') return [ids];
  return ids;
}

/** A copy, for changing the ids while going through them. */
export function idArray(ids: Ids): string[] {
  return ids === undefined ? [] : typeof ids === 'string' ? [ids] : [...ids];
}
