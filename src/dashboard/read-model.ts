/**
 * The dashboard's only window onto the cache: everything the page shows about entries goes
 * through these functions, over the orchestrator's read API (`counts()`, `page()`, `entries()`,
 * `sharing()`, and its events), so it works the same on every backend.
 */
import type { ImageCache } from '../cache/image-cache.ts';
import type { Entry } from '../domain/entry.ts';
import type { StoredChart } from '../charts/chart.ts';
import type { ChartService } from '../charts/service.ts';
import { summarizeQuery, summaryLine, type QuerySummary } from '../domain/query-summary.ts';

export type EntryKind = Entry['kind'];
export const IMAGE_TYPES = ['png', 'jpeg', 'svg', 'pdf'] as const;
export type ImageType = (typeof IMAGE_TYPES)[number];

/**
 * Entries a filtered request looks at before it answers with what it found so far (and a cursor
 * to continue): a search never walks all of a 100k-entry cache in one request.
 */
export const SEARCH_SCAN_LIMIT = 5000;

export interface PageQuery {
  /** From a previous page's `next`; undefined for the newest entries. */
  cursor?: string;
  limit: number;
  kind?: EntryKind;
  /** Words that must all appear in the query summary, id or error message (case-insensitive). */
  text?: string;
  imageType?: ImageType;
}

export interface Page {
  entries: Entry[];
  next?: string;
  /** Live entries matching the filters; undefined when a text or type filter makes that costly. */
  matched?: number;
}

export async function counts(cache: ImageCache) {
  return cache.counts();
}

/** Newest first. State filters go to the cache's own paging; text and image type are applied here. */
export async function page(cache: ImageCache, q: PageQuery): Promise<Page> {
  const words = (q.text ?? '').toLowerCase().split(/\s+/).filter(Boolean);
  const kind = q.kind;
  if (words.length === 0 && !q.imageType) {
    const [p, c] = await Promise.all([
      cache.page({
        limit: q.limit,
        ...(q.cursor ? { cursor: q.cursor } : {}),
        ...(kind ? { kind } : {}),
      }),
      cache.counts(),
    ]);
    return { ...p, matched: kind ? c[kind] : c.pending + c.image + c.error };
  }
  const matches = (e: Entry): boolean => {
    if (q.imageType && imageTypeOf(e) !== q.imageType) return false;
    if (words.length === 0) return true;
    const hay = haystack(e);
    return words.every((w) => hay.includes(w));
  };
  // Ask only for as many as are still missing: every entry a page returns is then looked at, and
  // its `next` resumes exactly after them (the cache's cursors are opaque).
  const found: Entry[] = [];
  let cursor = q.cursor;
  let scanned = 0;
  for (;;) {
    const p = await cache.page({
      limit: q.limit - found.length,
      ...(cursor ? { cursor } : {}),
      ...(kind ? { kind } : {}),
    });
    scanned += p.entries.length;
    for (const e of p.entries) if (matches(e)) found.push(e);
    cursor = p.next;
    if (cursor === undefined || found.length >= q.limit || scanned >= SEARCH_SCAN_LIMIT)
      return { entries: found, ...(cursor ? { next: cursor } : {}) };
  }
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

/** Lowercased search text, built once per entry object (finished entries never change). */
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

/** The part of the chart service the dashboard reads: a page of charts, and who is refreshing. */
export type ChartReader = Pick<ChartService, 'list' | 'count' | 'isRefreshing'>;

/**
 * What a named chart shows on the dashboard, in one word: `fresh` (an image younger than its
 * refresh period), `stale` (older: the next view refreshes it), `failing` (the last refresh
 * failed; the last good image, if any, is still served) or `waiting` (no image yet: the first view
 * fetches it).
 */
export type ChartHealth = 'fresh' | 'stale' | 'failing' | 'waiting';

export function chartHealth({ state }: StoredChart, now: number): ChartHealth {
  if (state.lastError) return 'failing';
  if (!state.image) return 'waiting';
  return state.dueAt === undefined || now >= state.dueAt ? 'stale' : 'fresh';
}

export interface ChartsPage {
  charts: Array<{ chart: StoredChart; summary: QuerySummary; refreshing: boolean }>;
  total: number;
  next?: string;
}

/** Charts in name order, each with its query in words (the same summary entries carry). */
export async function chartsPage(
  charts: ChartReader,
  after: string | undefined,
  limit: number,
): Promise<ChartsPage> {
  const page = await charts.list(after, limit);
  return {
    charts: page.charts.map((chart) => ({
      chart,
      summary: summarizeQuery(chart.definition.query),
      refreshing: charts.isRefreshing(chart.definition.name),
    })),
    total: page.total,
    ...(page.next !== undefined ? { next: page.next } : {}),
  };
}
