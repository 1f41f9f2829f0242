import { isImageMime, type Entry } from './entry.ts';
import { parseId } from './ids.ts';
import { isQuerySummary } from './query-summary.ts';

/** Bumped when the stored shape changes; records of another version are quarantined, not guessed at. */
export const ENTRY_FORMAT_VERSION = 1;

export function encodeEntry(entry: Entry): string {
  if (entry.kind !== 'pending') return JSON.stringify({ v: ENTRY_FORMAT_VERSION, ...entry });
  // The query is JSON text already: spliced in as the object it stands for, not quoted.
  const { query, ...rest } = entry;
  return (
    JSON.stringify({ v: ENTRY_FORMAT_VERSION, ...rest }).slice(0, -1) + ',"query":' + query + '}'
  );
}

const DIGEST = /^[0-9a-f]{64}$/;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStr = (v: unknown): v is string => typeof v === 'string';

/** Parses a stored record, checking every field; throws an Error whose message says what is wrong. */
export function decodeEntry(text: string): Entry {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new Error('not a JSON object');
  const r = raw as Record<string, unknown>;
  if (r.v !== ENTRY_FORMAT_VERSION)
    throw new Error(`format version ${JSON.stringify(r.v)}, expected ${ENTRY_FORMAT_VERSION}`);
  const parsed = isStr(r.id) ? parseId(r.id) : undefined;
  if (!parsed) throw new Error('missing or malformed id');
  if (r.hash !== parsed.hash || r.expiresAt !== parsed.expiresAt)
    throw new Error('hash or expiresAt disagree with the id');
  if (!isNum(r.createdAt)) throw new Error('missing createdAt');
  const { id, hash, expiresAt } = parsed;
  const createdAt = r.createdAt;
  // Only words for people: a malformed one is dropped rather than costing the entry.
  const summary = isQuerySummary(r.summary) ? r.summary : undefined;
  // Plain literals, not spreads: loading 100k entries at start-up is measurably faster this way.
  switch (r.kind) {
    case 'pending':
      if (typeof r.query !== 'object' || r.query === null)
        throw new Error('pending entry without query');
      return {
        id,
        hash,
        expiresAt,
        createdAt,
        summary,
        kind: 'pending',
        query: JSON.stringify(r.query),
      };
    case 'image':
      if (!isStr(r.digest) || !DIGEST.test(r.digest))
        throw new Error('image entry with bad digest');
      if (!isStr(r.mime) || !isImageMime(r.mime)) throw new Error('image entry with unknown mime');
      if (!isNum(r.size) || !isNum(r.fetchedAt))
        throw new Error('image entry without size or fetchedAt');
      return {
        id,
        hash,
        expiresAt,
        createdAt,
        summary,
        kind: 'image',
        digest: r.digest,
        mime: r.mime,
        size: r.size,
        fetchedAt: r.fetchedAt,
      };
    case 'error':
      if (!isNum(r.status) || !isStr(r.errorType) || !isStr(r.message))
        throw new Error('error entry with bad fields');
      return {
        id,
        hash,
        expiresAt,
        createdAt,
        summary,
        kind: 'error',
        status: r.status,
        errorType: r.errorType,
        message: r.message,
      };
    default:
      throw new Error(`unknown kind ${JSON.stringify(r.kind)}`);
  }
}
