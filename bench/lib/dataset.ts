import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Entry } from '../../src/domain/entry.ts';
import { queryHash } from '../../src/domain/hash.ts';
import { formatId } from '../../src/domain/ids.ts';
import { RecordWriter } from '../../src/store/records.ts';
import { summarizeQuery } from '../../src/domain/query-summary.ts';

export interface DatasetMix {
  image: number;
  error: number;
  pending: number;
  expired: number;
}

export interface DatasetSpec {
  /** CACHE_PATH to fill (entries/ and blobs/ are created). */
  dir: string;
  count: number;
  /** Shares of the count, summing to 1. */
  mix: DatasetMix;
  /** Expiry of live entries (epoch ms); default: an hour or more from now. */
  liveUntil?: number;
  /** Ids per query hash (several ids of one query, as dashboards make them). */
  idsPerQuery: number;
  /** Distinct images the image entries point at. */
  blobs: number;
  blobBytes: number;
  /** A Kentik query; pending entries get copies with a unique title, so resumed fetches really render. */
  query: Record<string, any>;
  pendingQueries: number;
}

export interface Dataset {
  counts: DatasetMix;
  files: number;
  generationMs: number;
  /** Every entry written, e.g. to write the store's index snapshot of them. */
  entries: Entry[];
}

/**
 * Writes a cache directory the way the service would have left it had it been killed before any
 * compaction: every entry in the journal (entries/journal-1, records made by the store's own
 * RecordWriter), image bytes under their sha256. No fsync: it is test data.
 */
export function writeDataset(spec: DatasetSpec): Dataset {
  const started = performance.now();
  const entriesDir = path.join(spec.dir, 'entries');
  const blobsDir = path.join(spec.dir, 'blobs');
  mkdirSync(entriesDir, { recursive: true });
  mkdirSync(blobsDir, { recursive: true });

  const blobs: Array<{ digest: string; size: number }> = [];
  for (let i = 0; i < spec.blobs; i++) {
    const bytes = randomBytes(spec.blobBytes);
    const digest = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(path.join(blobsDir, digest), bytes);
    blobs.push({ digest, size: bytes.length });
  }

  const now = Date.now();
  const counts: DatasetMix = {
    image: Math.round(spec.count * spec.mix.image),
    error: Math.round(spec.count * spec.mix.error),
    pending: Math.round(spec.count * spec.mix.pending),
    expired: 0,
  };
  counts.expired = spec.count - counts.image - counts.error - counts.pending;

  const pendingQueries = Array.from({ length: Math.max(1, spec.pendingQueries) }, (_, i) => {
    const q = structuredClone(spec.query);
    const first = q.queries?.[0]?.query;
    if (first) first.query_title = `bench resumed query ${i} ${now}`;
    return { query: q, hash: queryHash(q) };
  });

  // Every entry carries its query in words, as the service writes it (one Q record per query).
  const summary = summarizeQuery(spec.query);
  const entries: Entry[] = [];
  const records: string[] = [];
  const writer = new RecordWriter();
  let n = 0;
  let hash = '';
  const write = (
    make: (base: Pick<Entry, 'id' | 'hash' | 'expiresAt' | 'createdAt' | 'summary'>) => Entry,
    expiresAtBase: number,
  ): void => {
    // A new query every idsPerQuery ids; ids of one query differ by their expiry millisecond.
    const slot = n % spec.idsPerQuery;
    if (slot === 0) hash = randomBytes(32).toString('hex');
    const expiresAt = expiresAtBase + slot;
    const id = formatId(hash, expiresAt);
    const createdAt = Math.min(now, expiresAt) - 60_000 - (n % 3600) * 1000;
    const entry = make({ id, hash, expiresAt, createdAt, summary });
    records.push(writer.put(entry));
    entries.push(entry);
    n++;
  };
  const live = (i: number): number => spec.liveUntil ?? now + 3_600_000 + (i % 86_400) * 1000;

  for (let i = 0; i < counts.image; i++) {
    const blob = blobs[i % blobs.length]!;
    write(
      (b) => ({
        ...b,
        kind: 'image',
        digest: blob.digest,
        mime: 'image/png',
        size: blob.size,
        fetchedAt: b.createdAt,
      }),
      live(i),
    );
  }
  for (let i = 0; i < counts.error; i++) {
    const status = [400, 403, 429, 500][i % 4]!;
    write(
      (b) => ({
        ...b,
        kind: 'error',
        status,
        errorType: 'Kentik API error',
        message: `Kentik API answered ${status}: benchmark error ${i}`,
      }),
      live(i),
    );
  }
  for (let i = 0; i < counts.expired; i++) {
    const past = now - 1000 - (i % 86_400) * 1000;
    if (i % 3 === 2) {
      const blob = blobs[i % blobs.length]!;
      write(
        (b) => ({
          ...b,
          kind: 'image',
          digest: blob.digest,
          mime: 'image/png',
          size: blob.size,
          fetchedAt: b.createdAt,
        }),
        past,
      );
    } else
      write(
        (b) => ({
          ...b,
          kind: 'error',
          status: 500,
          errorType: 'Kentik API error',
          message: 'Kentik API answered 500: old error',
        }),
        past,
      );
  }
  // Pending ids share their queries (one resumed fetch per query), unlike the random hashes above.
  for (let i = 0; i < counts.pending; i++) {
    const pq = pendingQueries[i % pendingQueries.length]!;
    const expiresAt = live(i) + Math.floor(i / pendingQueries.length);
    const id = formatId(pq.hash, expiresAt);
    const entry: Entry = {
      id,
      hash: pq.hash,
      expiresAt,
      createdAt: now - 1000,
      summary: summarizeQuery(pq.query),
      kind: 'pending',
      query: JSON.stringify(pq.query),
    };
    records.push(writer.put(entry));
    entries.push(entry);
  }
  writeFileSync(path.join(entriesDir, 'journal-1'), records.join(''));
  return {
    counts,
    files: 1 + spec.blobs,
    generationMs: Math.round(performance.now() - started),
    entries,
  };
}
