/**
 * The dashboard's only window onto the cache. Everything the page shows about entries goes through
 * these functions, so moving onto the orchestrator's own read API (issue 8: `cache.counts()`,
 * `cache.page()`, `cache.events`) is an edit of this file alone.
 */
import type { ImageCache } from '../cache/image-cache.ts';
import type { Entry } from '../domain/entry.ts';
import { summaryLine } from '../domain/query-summary.ts';

export type EntryKind = Entry['kind'];
export const IMAGE_TYPES = ['png', 'jpeg', 'svg', 'pdf'] as const;
export type ImageType = (typeof IMAGE_TYPES)[number];

export interface PageQuery {
  /** From a previous page's `next`; undefined for the newest entries. */
  cursor?: Cursor;
  limit: number;
  kind?: EntryKind;
  /** Words that must all appear in the query summary, id or error message (case-insensitive). */
  text?: string;
  imageType?: ImageType;
}

export interface Cursor {
  createdAt: number;
  id: string;
}

export interface Page {
  entries: Entry[];
  next?: Cursor;
  /** Live entries matching the filters, all pages together. */
  matched: number;
}

export function counts(cache: ImageCache): {
  pending: number;
  image: number;
  error: number;
  storedBytes: number;
} {
  return { ...cache.countEntries(), storedBytes: cache.storedBytes };
}

export function sharesOf(cache: ImageCache, entry: Entry): number {
  return cache.idsSharing(entry.hash);
}

/** Newest first is (createdAt, id) descending: a total order, so a cursor never skips or repeats. */
const newer = (a: Cursor, b: Cursor): boolean =>
  a.createdAt > b.createdAt || (a.createdAt === b.createdAt && a.id > b.id);

/**
 * One page of live entries, newest first. One pass over the index keeping only the best `limit`
 * (no sort of everything, nothing copied): a few milliseconds at 100k entries.
 */
export function page(cache: ImageCache, q: PageQuery, now = Date.now()): Page {
  const words = (q.text ?? '').toLowerCase().split(/\s+/).filter(Boolean);
  const best: Entry[] = [];
  const keep = q.limit + 1; // one more than asked tells whether there is a next page
  let matched = 0;
  for (const entry of cache.entries.values()) {
    if (entry.expiresAt <= now) continue;
    if (q.kind && entry.kind !== q.kind) continue;
    if (q.imageType && imageTypeOf(entry) !== q.imageType) continue;
    if (words.length > 0) {
      const hay = haystack(entry);
      if (!words.every((w) => hay.includes(w))) continue;
    }
    matched++;
    if (q.cursor && !newer(q.cursor, entry)) continue;
    if (best.length === keep && !newer(entry, best[keep - 1]!)) continue;
    // Insert in order (binary search); the array never holds more than limit + 1.
    let lo = 0;
    let hi = best.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (newer(best[mid]!, entry)) lo = mid + 1;
      else hi = mid;
    }
    best.splice(lo, 0, entry);
    if (best.length > keep) best.pop();
  }
  const more = best.length > q.limit;
  if (more) best.pop();
  const last = best.at(-1);
  return {
    entries: best,
    matched,
    ...(more && last ? { next: { createdAt: last.createdAt, id: last.id } } : {}),
  };
}

/** Entries by id, for the event stream (unknown or expired ids are left out). */
export function entriesById(cache: ImageCache, ids: Iterable<string>, now = Date.now()): Entry[] {
  const out: Entry[] = [];
  for (const id of ids) {
    const e = cache.entries.get(id);
    if (e && e.expiresAt > now) out.push(e);
  }
  return out;
}

export function imageTypeOf(entry: Entry): string | undefined {
  if (entry.kind === 'image') {
    switch (entry.mime) {
      case 'image/png':
        return 'png';
      case 'image/jpeg':
        return 'jpeg';
      case 'image/svg+xml':
        return 'svg';
      case 'application/pdf':
        return 'pdf';
    }
  }
  return entry.summary?.imageType;
}

/** Entries never change, so the lowercased search text is built once per entry object. */
const haystacks = new WeakMap<Entry, string>();
function haystack(entry: Entry): string {
  let h = haystacks.get(entry);
  if (h === undefined) {
    h = [
      entry.id,
      entry.summary ? summaryLine(entry.summary) : '',
      entry.kind === 'error' ? `${entry.status} ${entry.message}` : '',
    ]
      .join(' ')
      .toLowerCase();
    haystacks.set(entry, h);
  }
  return h;
}

export function encodeCursor(c: Cursor): string {
  return `${c.createdAt}~${c.id}`;
}

export function decodeCursor(text: string): Cursor | undefined {
  const m = /^(\d{1,16})~([0-9a-f]{64}_\d{1,12}(?:\.\d{1,9})?)$/.exec(text);
  if (!m) return undefined;
  return { createdAt: Number(m[1]), id: m[2]! };
}

/**
 * Named live charts (issue 13, /charts/{name}) will be listed here; the page shows a "Named
 * charts" section as soon as this returns any.
 */
export function namedCharts(): Array<{ name: string; url: string; title?: string }> {
  return [];
}
