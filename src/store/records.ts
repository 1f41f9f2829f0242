import { crc32 } from 'node:zlib';
import { IMAGE_MIMES, type Entry, type QueryJson } from '../domain/entry.ts';
import { decodeEntry } from '../domain/entry-codec.ts';
import { parseId, type ParsedId } from '../domain/ids.ts';
import { isQuerySummary, sameSummary, type QuerySummary } from '../domain/query-summary.ts';

/**
 * The record format shared by the entry journal and the index snapshot: one line per record,
 *
 *   <crc32 of the body, 8 hex digits> <body>\n
 *
 *   body   Q <hash> <JSON {"summary"?, "query"?}>          what the entries of one query share
 *          E <id> <createdAt> image <digest> <mime> <size> <fetchedAt>
 *          E <id> <createdAt> error <status> <JSON [errorType, message]>
 *          E <id> <createdAt> pending
 *          D <id>                                          a delete
 *          P <entry JSON, format 1>                        a put as written before Q/E (read only)
 *
 * An `E` record holds only what its id does not say (the hash and expiry are in the id). Its
 * query's summary, and for a pending entry the query itself, come from the last `Q` record of its
 * hash earlier in the same file: written once per query and file rather than once per entry (a
 * pending entry's query is some 3 KB, a summary some 170 bytes, an `E` record about 180). A record
 * never depends on another file, since compaction deletes older journals. So a file is read with
 * its own table of queries (`ReadContext.queries`), and every entry of a query shares its objects.
 *
 * JSON never holds a raw newline, so a line is a record. The checksum tells a record that was
 * written whole from one a crash tore or a disk damaged, which then counts as never written. A
 * damaged `Q` record costs only what depends on it: the image and error entries of that query load
 * without their summary (only words for people), its pending entries cannot be fetched and are
 * reported as bad records.
 */

/** What reading a file needs besides its bytes. */
export interface ReadContext {
  /** What the `Q` records of this file said so far, by hash: one table per file. */
  queries: Map<string, QueryInfo>;
  /**
   * One string per hash and digest, shared by every entry read with this context (it may span
   * files): entries leave the store as the index keeps them, not with copies to replace. Holds
   * only strings checked to be 64 hex digits.
   */
  strings: Map<string, string>;
  /** The same for error types (a handful of values). */
  words: Map<string, string>;
  /** Entries whose id expires at or before this (epoch ms) are reported by id only. */
  expiredBefore?: number | undefined;
}

export interface QueryInfo {
  summary?: QuerySummary;
  /** Only written for a query that has pending entries (as JSON text, see QueryJson). */
  query?: QueryJson;
}

export function deleteRecord(id: string): string {
  return record('D ' + id);
}

/**
 * The `E` record of an entry, alone: valid only after a `Q` record of its query in the same file
 * (see RecordWriter) when the entry is pending or has a summary.
 */
export function entryRecord(entry: Entry): string {
  const head = `E ${entry.id} ${entry.createdAt} `;
  switch (entry.kind) {
    case 'pending':
      return record(head + 'pending');
    case 'image':
      return record(`${head}image ${entry.digest} ${entry.mime} ${entry.size} ${entry.fetchedAt}`);
    case 'error':
      return record(
        `${head}error ${entry.status} ${JSON.stringify([entry.errorType, entry.message])}`,
      );
  }
}

/** The `Q` record of a query: its summary and, when `query` is given, the query. */
export function queryRecord(
  hash: string,
  summary: QuerySummary | undefined,
  query?: QueryJson,
): string {
  // The query is JSON text already: spliced in as the object it stands for, not quoted.
  const fields: string[] = [];
  if (summary) fields.push('"summary":' + JSON.stringify(summary));
  if (query !== undefined) fields.push('"query":' + query);
  return record(`Q ${hash} {${fields.join(',')}}`);
}

/** An entry's records standing on their own (a `Q` record if it needs one, then its `E`). */
export function putRecord(entry: Entry): string {
  return new RecordWriter().put(entry);
}

/**
 * Writes the records of one file: each entry's `E` record, preceded by its query's `Q` record the
 * first time that file needs it (for its summary, or for the query of a pending entry). A new
 * file needs a new writer, or `reset()`: a record must never rely on a `Q` record elsewhere.
 */
export class RecordWriter {
  /**
   * What the last `Q` record of each hash in this file said, as a reader of the file will see it:
   * its summary (a hash is in this map once it has one), and its query if it carried one. A
   * pending entry is written with its own query text: the coordinator gives every pending entry
   * of a query the flight's (the same string, so the comparison is by reference), so that is one
   * `Q` record per query, and an entry never loads with a query other than its own. Two maps rather than an object per hash: a snapshot of a million
   * entries writes some 100k queries, and each object would outlive the young generation.
   */
  readonly #summaries = new Map<string, QuerySummary | undefined>();
  readonly #queries = new Map<string, QueryJson>();

  put(entry: Entry): string {
    return this.before(entry) + entryRecord(entry);
  }

  /** The `Q` record `entry` needs before its `E` record in this file, or ''. */
  before(entry: Entry): string {
    const query = entry.kind === 'pending' ? entry.query : undefined;
    const summary = entry.summary;
    if (query === undefined && !summary) return '';
    const { hash } = entry;
    if (this.#summaries.has(hash)) {
      const written = this.#summaries.get(hash);
      if (
        (query === undefined || this.#queries.get(hash) === query) &&
        (!summary || written === summary || (written && sameSummary(written, summary)))
      )
        return '';
    }
    // Bounded: a journal lives until the next compaction, and must not keep every query and
    // summary it ever wrote alive. Forgetting costs only a repeated `Q` record.
    if (
      (query !== undefined && this.#queries.size >= MAX_QUERIES_KEPT) ||
      this.#summaries.size >= MAX_HASHES_KEPT
    )
      this.reset();
    this.#summaries.set(hash, summary);
    if (query !== undefined) this.#queries.set(hash, query);
    else this.#queries.delete(hash);
    return queryRecord(hash, summary, query);
  }

  reset(): void {
    this.#summaries.clear();
    this.#queries.clear();
  }
}

const MAX_QUERIES_KEPT = 256;
const MAX_HASHES_KEPT = 1 << 17;

function record(body: string): string {
  return crc32(body).toString(16).padStart(8, '0') + ' ' + body + '\n';
}

export type Parsed =
  { put: Entry } | { del: string } | { expired: string } | { query: string } | { bad: string };

const DIGEST = /^[0-9a-f]{64}$/;
const SPACE = 0x20;

/**
 * Parses the record in `buf[start, end)` (without its newline). A `Q` record goes into
 * `ctx.queries` (the table of the file being read); an `E` record takes its summary and query
 * from it. A put of an id already expired at `ctx.expiredBefore` is reported by id alone: its
 * entry would only be made to be thrown away (30 % of the records at a typical start).
 */
export function parseRecord(buf: Buffer, start: number, end: number, ctx: ReadContext): Parsed {
  if (end - start < 11 || buf[start + 8] !== SPACE || buf[start + 10] !== SPACE)
    return { bad: end === start ? 'empty record' : 'not a record' };
  if (readHex8(buf, start) !== crc32(buf.subarray(start + 9, end)))
    return { bad: 'checksum mismatch' };
  const at = start + 11;
  try {
    switch (buf[start + 9]) {
      case 0x45: // E
        return parseEntry(buf, at, end, ctx);
      case 0x44: // D
        return { del: buf.toString('latin1', at, end) };
      case 0x51: // Q
        return { query: parseQuery(buf, at, end, ctx) };
      case 0x50: {
        // P
        const entry = decodeEntry(buf.toString('utf8', at, end));
        if (ctx.expiredBefore !== undefined && entry.expiresAt <= ctx.expiredBefore)
          return { expired: entry.id };
        return { put: entry };
      }
      default:
        return { bad: 'unknown record type' };
    }
  } catch (err) {
    return { bad: (err as Error).message };
  }
}

/** `text` itself, or the equal string read before (from `table`). */
function shared(table: Map<string, string>, text: string): string {
  const known = table.get(text);
  if (known !== undefined) return known;
  table.set(text, text);
  return text;
}

/** A hash or digest: the string read before if there was one (then already checked). */
function hexString(ctx: ReadContext, text: string, what: string): string {
  const known = ctx.strings.get(text);
  if (known !== undefined) return known;
  if (!DIGEST.test(text)) throw new Error(what);
  ctx.strings.set(text, text);
  return text;
}

function parseQuery(buf: Buffer, at: number, end: number, ctx: ReadContext): string {
  const space = buf.indexOf(SPACE, at);
  if (space < 0 || space >= end) throw new Error('query record without hash');
  const hash = hexString(
    ctx,
    buf.toString('latin1', at, space),
    'query record with a malformed hash',
  );
  let raw: unknown;
  try {
    raw = JSON.parse(buf.toString('utf8', space + 1, end));
  } catch (err) {
    throw new Error(`query record: not JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof raw !== 'object' || raw === null) throw new Error('query record: not an object');
  const r = raw as Record<string, unknown>;
  const info: QueryInfo = {};
  // Only words for people: a malformed one is dropped rather than costing the entries.
  if (isQuerySummary(r.summary)) info.summary = r.summary;
  if (typeof r.query === 'object' && r.query !== null) info.query = JSON.stringify(r.query);
  ctx.queries.set(hash, info);
  return hash;
}

/**
 * The next space-separated field of `buf[at, end)`: its end (exclusive). A loop over the bytes
 * rather than Buffer#indexOf: fields are short, and a call into C++ per field costs more.
 */
function fieldEnd(buf: Buffer, at: number, end: number, what: string): number {
  if (at >= end) throw new Error(`entry record without ${what}`);
  let i = at;
  while (i < end && buf[i] !== SPACE) i++;
  return i;
}

/** Hex digit values by byte, -1 for anything else. */
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX['0123456789abcdef'.charCodeAt(i)] = i;
  HEX['0123456789ABCDEF'.charCodeAt(i)] = i;
}

/** The 8 hex digits at `at` (a record's checksum), or -1. */
function readHex8(buf: Buffer, at: number): number {
  let v = 0;
  for (let i = at; i < at + 8; i++) {
    const d = HEX[buf[i]!]!;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/**
 * The id in `buf[at, end)`, checked as parseId checks it. Ids as formatId writes them today
 * (`<64 hex>_<10 digits>.<3 digits>`) are checked and their expiry read from the bytes; any other
 * goes through parseId.
 */
function readId(buf: Buffer, at: number, end: number): ParsedId | undefined {
  if (end - at !== 79 || buf[at + 64] !== 0x5f || buf[at + 75] !== 0x2e)
    return parseId(buf.toString('latin1', at, end));
  for (let i = at; i < at + 64; i++) {
    const c = buf[i]!;
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return undefined; // [0-9a-f]
  }
  let seconds = 0;
  for (let i = at + 65; i < at + 75; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return undefined;
    seconds = seconds * 10 + d;
  }
  let ms = 0;
  for (let i = at + 76; i < at + 79; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return undefined;
    ms = ms * 10 + d;
  }
  const id = buf.toString('latin1', at, end);
  // What parseId computes, Math.round(Number(seconds.fraction) * 1000), exactly: an integer below 2^53.
  return { id, hash: id.slice(0, 64), expiresAt: seconds * 1000 + ms };
}

/** Whether `buf[at, end)` holds exactly the bytes of `word` (ASCII). */
function isWord(buf: Buffer, at: number, end: number, word: Uint8Array): boolean {
  if (end - at !== word.length) return false;
  for (let i = 0; i < word.length; i++) if (buf[at + i] !== word[i]) return false;
  return true;
}

const PENDING = Buffer.from('pending');
const IMAGE = Buffer.from('image');
const ERROR = Buffer.from('error');
/** Each known mime (the constant itself, not a copy per entry) by the length of its name. */
const MIME_BY_LENGTH = new Map(IMAGE_MIMES.map((m) => [m.length, [m, Buffer.from(m)] as const]));

/** A number field: digits the fast way, anything else as JavaScript reads it; finite or throws. */
function numberField(buf: Buffer, at: number, end: number, what: string): number {
  let v = 0;
  if (end - at <= 15) {
    let i = at;
    for (; i < end; i++) {
      const d = buf[i]! - 0x30;
      if (d < 0 || d > 9) break;
      v = v * 10 + d;
    }
    if (i === end && end > at) return v;
  }
  v = end > at ? Number(buf.toString('latin1', at, end)) : NaN;
  if (!Number.isFinite(v)) throw new Error(`entry record with a bad ${what}`);
  return v;
}

function parseEntry(buf: Buffer, at: number, end: number, ctx: ReadContext): Parsed {
  const idEnd = fieldEnd(buf, at, end, 'id');
  const parsed = readId(buf, at, idEnd);
  if (!parsed) throw new Error('entry record with a malformed id');
  const { id, expiresAt } = parsed;
  if (ctx.expiredBefore !== undefined && expiresAt <= ctx.expiredBefore) return { expired: id };
  const hash = shared(ctx.strings, parsed.hash); // checked by parseId
  const createdEnd = fieldEnd(buf, idEnd + 1, end, 'createdAt');
  const createdAt = numberField(buf, idEnd + 1, createdEnd, 'createdAt');
  const kindEnd = fieldEnd(buf, createdEnd + 1, end, 'kind');
  const kind = isWord(buf, createdEnd + 1, kindEnd, IMAGE)
    ? 'image'
    : isWord(buf, createdEnd + 1, kindEnd, ERROR)
      ? 'error'
      : isWord(buf, createdEnd + 1, kindEnd, PENDING)
        ? 'pending'
        : buf.toString('latin1', createdEnd + 1, kindEnd);
  const q = ctx.queries.get(hash);
  const summary = q?.summary;
  // Plain literals, not spreads: loading 100k entries at start-up is measurably faster this way.
  switch (kind) {
    case 'pending':
      if (kindEnd !== end) throw new Error('pending entry record with extra fields');
      if (q?.query === undefined)
        throw new Error(
          'pending entry without its query (the query record before it is missing or damaged); it cannot be fetched',
        );
      return { put: { id, hash, expiresAt, createdAt, summary, kind: 'pending', query: q.query } };
    case 'image': {
      const digestEnd = fieldEnd(buf, kindEnd + 1, end, 'digest');
      const digest = hexString(
        ctx,
        buf.toString('latin1', kindEnd + 1, digestEnd),
        'image entry with bad digest',
      );
      const mimeEnd = fieldEnd(buf, digestEnd + 1, end, 'mime');
      const known = MIME_BY_LENGTH.get(mimeEnd - digestEnd - 1);
      if (!known || !isWord(buf, digestEnd + 1, mimeEnd, known[1]))
        throw new Error('image entry with unknown mime');
      const mime = known[0];
      const sizeEnd = fieldEnd(buf, mimeEnd + 1, end, 'size');
      const size = numberField(buf, mimeEnd + 1, sizeEnd, 'size');
      if (sizeEnd === end) throw new Error('entry record without fetchedAt');
      const fetchedAt = numberField(buf, sizeEnd + 1, end, 'fetchedAt');
      const entry: Entry = {
        id,
        hash,
        expiresAt,
        createdAt,
        summary,
        kind: 'image',
        digest,
        mime,
        size,
        fetchedAt,
      };
      return { put: entry };
    }
    case 'error': {
      const statusEnd = fieldEnd(buf, kindEnd + 1, end, 'status');
      const status = numberField(buf, kindEnd + 1, statusEnd, 'status');
      let rest: unknown;
      try {
        rest = statusEnd < end ? JSON.parse(buf.toString('utf8', statusEnd + 1, end)) : undefined;
      } catch {
        rest = undefined;
      }
      if (!Array.isArray(rest) || typeof rest[0] !== 'string' || typeof rest[1] !== 'string')
        throw new Error('error entry with bad fields');
      const entry: Entry = {
        id,
        hash,
        expiresAt,
        createdAt,
        summary,
        kind: 'error',
        status,
        errorType: shared(ctx.words, rest[0]),
        message: rest[1],
      };
      return { put: entry };
    }
    default:
      throw new Error(`unknown kind ${JSON.stringify(kind.slice(0, 40))}`);
  }
}
