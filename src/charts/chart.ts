import type { ImageMime } from '../domain/entry.ts';
import { isImageMime } from '../domain/entry.ts';

/** 1–100 of `[A-Za-z0-9._-]`: safe in a URL path segment, a file name (behind a prefix) and a Redis key. */
export const CHART_NAME_PATTERN = /^[A-Za-z0-9._-]{1,100}$/;
export const CHART_NAME_PATTERN_SOURCE = '^[A-Za-z0-9._-]{1,100}$';

/**
 * `.` and `..` match the pattern but are dot-segments: browsers and HTTP clients rewrite
 * `/charts/..` to `/` before sending, so a chart with such a name could never be reached.
 */
export const isChartName = (name: string): boolean =>
  CHART_NAME_PATTERN.test(name) && name !== '.' && name !== '..';

/** What a client defined with PUT /charts/{name}. */
export interface ChartDefinition {
  name: string;
  query: Record<string, unknown>;
  /** Seconds an image stays fresh. */
  refresh: number;
  /** Epoch ms. */
  createdAt: number;
  updatedAt: number;
  /**
   * Random per PUT. State written by a refresh carries the generation it refreshed, so a refresh of
   * a replaced (or deleted and re-created) chart can never attach its image to the new definition.
   */
  generation: string;
}

/** The last good image a refresh produced; the bytes live in the image cache under `imageId`. */
export interface ChartImage {
  imageId: string;
  digest: string;
  mime: ImageMime;
  /** When Kentik drew it (epoch ms); a shared image keeps the time of the fetch it came from. */
  fetchedAt: number;
}

export interface ChartFailure {
  status: number;
  type: string;
  message: string;
  /** Epoch ms. */
  at: number;
}

/** What refreshes have produced so far. */
export interface ChartState {
  generation: string;
  image?: ChartImage;
  /** Epoch ms after which the image is stale and the next request starts a refresh. */
  dueAt?: number;
  lastAttemptAt?: number;
  /** The last refresh failed (cleared by the next success). */
  lastError?: ChartFailure;
  /** Refreshes failed in a row. */
  failures: number;
  /** Epoch ms before which a failing chart is not refreshed again (backoff). */
  retryAt?: number;
}

export interface StoredChart {
  definition: ChartDefinition;
  /** Always of the definition's generation; a fresh state when no refresh has finished yet. */
  state: ChartState;
}

export const emptyState = (generation: string): ChartState => ({ generation, failures: 0 });

/** Bumped when the stored shape changes. */
export const CHART_FORMAT_VERSION = 1;

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStr = (v: unknown): v is string => typeof v === 'string';
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export function encodeDefinition(d: ChartDefinition): string {
  return JSON.stringify({ v: CHART_FORMAT_VERSION, ...d });
}

export function encodeState(s: ChartState): string {
  return JSON.stringify({ v: CHART_FORMAT_VERSION, ...s });
}

/** Parses a stored definition, checking every field; throws an Error saying what is wrong. */
export function decodeDefinition(text: string): ChartDefinition {
  const r = parseVersioned(text);
  if (!isStr(r.name) || !isChartName(r.name)) throw new Error('missing or invalid chart name');
  if (!isObj(r.query)) throw new Error('query is not an object');
  if (!isNum(r.refresh) || !Number.isInteger(r.refresh) || r.refresh < 1)
    throw new Error('refresh is not a positive integer');
  if (!isNum(r.createdAt) || !isNum(r.updatedAt)) throw new Error('missing createdAt/updatedAt');
  if (!isStr(r.generation) || r.generation === '') throw new Error('missing generation');
  return {
    name: r.name,
    query: r.query,
    refresh: r.refresh,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    generation: r.generation,
  };
}

export function decodeState(text: string): ChartState {
  const r = parseVersioned(text);
  if (!isStr(r.generation)) throw new Error('state without generation');
  const state: ChartState = {
    generation: r.generation,
    failures: isNum(r.failures) ? r.failures : 0,
  };
  if (r.image !== undefined) {
    const i = r.image;
    if (
      !isObj(i) ||
      !isStr(i.imageId) ||
      !isStr(i.digest) ||
      !isStr(i.mime) ||
      !isImageMime(i.mime) ||
      !isNum(i.fetchedAt)
    )
      throw new Error('state with a malformed image');
    state.image = { imageId: i.imageId, digest: i.digest, mime: i.mime, fetchedAt: i.fetchedAt };
  }
  if (isNum(r.dueAt)) state.dueAt = r.dueAt;
  if (isNum(r.lastAttemptAt)) state.lastAttemptAt = r.lastAttemptAt;
  if (isNum(r.retryAt)) state.retryAt = r.retryAt;
  if (r.lastError !== undefined) {
    const e = r.lastError;
    if (!isObj(e) || !isNum(e.status) || !isStr(e.type) || !isStr(e.message) || !isNum(e.at))
      throw new Error('state with a malformed lastError');
    state.lastError = { status: e.status, type: e.type, message: e.message, at: e.at };
  }
  return state;
}

function parseVersioned(text: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON (${(err as Error).message})`, { cause: err });
  }
  if (!isObj(raw)) throw new Error('not a JSON object');
  if (raw.v !== CHART_FORMAT_VERSION)
    throw new Error(`format version ${JSON.stringify(raw.v)}, expected ${CHART_FORMAT_VERSION}`);
  return raw;
}

/**
 * Lifetime (seconds) of the image ids a refresh creates: the refresh period plus a margin of
 * max(refresh, grace), so the image outlives its period, survives one unviewed period, and keeps
 * being served for at least `grace` seconds while refreshes fail. Capped at MAX_TTL.
 */
export function refreshTtl(refresh: number, graceSeconds: number, maxTtl: number): number {
  return Math.min(maxTtl, refresh + Math.max(refresh, graceSeconds));
}

/**
 * When a freshly refreshed image falls due. Normally `fetchedAt + refresh`; but an image shared
 * from another fetch (REUSE_WINDOW) can already be older than `refresh`, and refreshing it again
 * at once would only get the same image back, so it falls due when the reuse window has passed.
 */
export function dueTime(fetchedAt: number, refresh: number, reuseWindowSeconds: number): number {
  return fetchedAt + Math.max(refresh, reuseWindowSeconds + 1) * 1000;
}

/**
 * Delay before a failing chart is refreshed again: one refresh period after the first failure,
 * doubling per failure in a row, at most max(refresh, 1 h). A broken query therefore costs Kentik
 * at most one call per refresh period, and fewer the longer it stays broken.
 */
export function retryDelayMs(refresh: number, failures: number): number {
  const cap = Math.max(refresh, 3600);
  return Math.min(refresh * 2 ** Math.max(0, Math.min(failures - 1, 30)), cap) * 1000;
}
