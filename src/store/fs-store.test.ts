import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { Entry, ErrorEntry, PendingEntry } from '../domain/entry.ts';
import { encodeEntry } from '../domain/entry-codec.ts';
import { formatId } from '../domain/ids.ts';
import { FsStore, readStoredEntries, replayFile, type ReplayTarget } from './fs-store.ts';
import { putRecord } from './records.ts';
import { imageEntry, pendingEntry, storeContract } from './store.contract.ts';

let dir: string;
let planted = 0;

const tempRoot = (): Promise<string> => mkdtemp(path.join(os.tmpdir(), 'kic-fs-store-'));

/** The journal files, oldest first. */
async function journals(root: string): Promise<string[]> {
  const names = (await readdir(path.join(root, 'entries'))).filter((n) => n.startsWith('journal-'));
  return names
    .sort((a, b) => Number(a.slice(8)) - Number(b.slice(8)))
    .map((n) => path.join(root, 'entries', n));
}

/** A record line whose checksum holds, for a body of our choosing. */
const line = (body: string): string => `${crc32(body).toString(16).padStart(8, '0')} ${body}\n`;

storeContract('FsStore', {
  async create() {
    dir = await tempRoot();
    return new FsStore(dir);
  },
  async plantBadRecord(_store, kind) {
    const e = pendingEntry(1000 + planted++);
    const text = putRecord(e);
    const content = {
      garbage: '\u0000\u0001not json at all\n',
      empty: '\n',
      truncated: text.slice(0, text.length / 2) + '\n',
      // Whole, its checksum holds, but of a format version this one does not know.
      'wrong-version': line('P ' + encodeEntry(e).replace('"v":1', '"v":99')),
    }[kind];
    await appendFile((await journals(dir)).at(-1)!, content);
  },
  async cleanup() {
    await rm(dir, { recursive: true, force: true });
  },
});

describe('FsStore specifics', () => {
  it('sweeps temp files left by an interrupted write, and moves stray files to quarantine/', async () => {
    const root = await tempRoot();
    const store = new FsStore(root);
    await store.open();
    await writeFile(path.join(root, 'entries', '.tmp-deadbeef'), '{"half');
    await writeFile(path.join(root, 'blobs', '.tmp-cafe'), 'half an image');
    await writeFile(path.join(root, '.tmp-f00d'), 'half a readiness check');
    await writeFile(path.join(root, 'entries', 'not-an-id.json'), '{}');
    const { quarantined } = await store.loadEntries();
    expect(quarantined.map((q) => q.name)).toEqual([path.join('entries', 'not-an-id.json')]);
    expect(await readdir(path.join(root, 'quarantine'))).toHaveLength(1);
    expect(await store.sweepTemporary()).toBe(3);
    expect(await readdir(path.join(root, 'entries'))).toEqual([]);
    expect((await readdir(root)).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
    await store.close();
    await rm(root, { recursive: true, force: true });
  });

  it('commits the writes of one turn with one flush, and each resolves only once durable', async () => {
    const root = await tempRoot();
    const store = new FsStore(root);
    await store.open();
    const entries = Array.from({ length: 200 }, (_, i) => pendingEntry(i));
    await Promise.all(entries.map((e) => store.putEntry(e)));
    // One journal file, read back by another reader (no lock, as a restarted process would).
    expect(await journals(root)).toHaveLength(1);
    expect((await readStoredEntries(root)).size).toBe(200);
    const text = await readFile((await journals(root))[0]!, 'utf8');
    // Each a query record (a pending entry's query) and its entry record.
    const types = text
      .split('\n')
      .filter(Boolean)
      .map((l) => l[9]);
    expect(types.filter((t) => t === 'E')).toHaveLength(200);
    expect(types.filter((t) => t === 'Q')).toHaveLength(200);
    await store.close();
    await rm(root, { recursive: true, force: true });
  });

  it('ignores a torn last record, and starts a new journal at every open', async () => {
    const root = await tempRoot();
    let store = new FsStore(root);
    await store.open();
    const a = pendingEntry(1);
    const b = pendingEntry(2);
    await store.putEntry(a);
    await store.close();
    // A crash in the middle of a write: half a record, no newline.
    const [first] = await journals(root);
    await appendFile(first!, putRecord(b).slice(0, 40));
    store = new FsStore(root);
    await store.open();
    const { entries, quarantined } = await store.loadEntries();
    expect(quarantined).toEqual([]);
    expect(entries).toEqual([a]);
    await store.putEntry(b);
    expect(await journals(root)).toHaveLength(2); // never appended after the torn tail
    expect(await store.getEntry(b.id)).toEqual(b);
    await store.close();
    await rm(root, { recursive: true, force: true });
  });

  it('compacts into the snapshot: the journals it covers go, and a crash before that loses nothing', async () => {
    const root = await tempRoot();
    const store = new FsStore(root);
    await store.open();
    const bytes = Buffer.from('x');
    const a = imageEntry(1, bytes);
    const b = pendingEntry(2);
    await store.putEntry(a);
    await store.putEntry(b);
    await store.checkpoint([a, b]);
    expect(await journals(root)).toEqual([]);
    await store.deleteEntry(a.id);
    const c = pendingEntry(3);
    await store.putEntry(c);
    // A second load, as after kill -9: snapshot plus journal.
    const got = [...(await readStoredEntries(root)).values()];
    expect(got.sort((x, y) => x.id.localeCompare(y.id))).toEqual(
      [b, c].sort((x, y) => x.id.localeCompare(y.id)),
    );
    await store.close();
    await rm(root, { recursive: true, force: true });
  });

  it('quarantines a damaged snapshot, and reads entry files of the format before the journal once', async () => {
    const root = await tempRoot();
    let store = new FsStore(root);
    await store.open();
    // An upgrade: entry files and a snapshot of the old format.
    const old = pendingEntry(7);
    await writeFile(path.join(root, 'entries', `${old.id}.json`), encodeEntry(old));
    await writeFile(path.join(root, 'index.snapshot'), '{"kentik-image-cache-snapshot":1}\n');
    let loaded = await store.loadEntries();
    expect(loaded).toEqual({ entries: [old], quarantined: [] });
    await store.close(); // the old files are gone once the new snapshot holds them
    expect(await readdir(path.join(root, 'entries'))).toEqual([]);
    expect((await readStoredEntries(root)).get(old.id)).toEqual(old);

    await writeFile(path.join(root, 'index.snapshot'), 'garbage\n{"v":1');
    store = new FsStore(root);
    await store.open();
    loaded = await store.loadEntries();
    expect(loaded.quarantined.map((q) => q.name)).toEqual(['index.snapshot']);
    await store.close();
    await rm(root, { recursive: true, force: true });
  });
});

const target = (expiredBefore?: number): ReplayTarget => ({
  entries: new Map(),
  expired: new Set(),
  bad: [],
  strings: new Map(),
  words: new Map(),
  expiredBefore,
});

describe('replayFile', () => {
  it('reads records across chunk boundaries of any size, and ignores only a torn last line', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'kic-replay-'));
    try {
      const file = path.join(root, 'journal-1');
      const a = pendingEntry(1);
      const b = imageEntry(2, Buffer.from('png bytes'));
      const lines = `{"header":1}\n${putRecord(a)}${putRecord(b)}${putRecord(a).slice(0, 40)}`;
      await writeFile(file, lines);
      for (const chunk of [1, 7, 64, 1 << 20]) {
        const into = target();
        const { entries, bad } = into;
        let header = '';
        const n = await replayFile(
          file,
          'journal-1',
          into,
          (line) => ((header = line), true),
          chunk,
        );
        expect({ chunk, n, header, ids: [...entries.keys()], bad }).toEqual({
          chunk,
          n: { records: 4, old: 0 }, // a's query record, a, b, and the torn tail
          header: '{"header":1}',
          ids: [a.id, b.id],
          bad: [],
        });
        expect(entries.get(b.id)).toEqual(b);
      }
      // A damaged record in the middle is reported with its byte offset in the file.
      await writeFile(file, `${putRecord(a)}00000000 P {}\n${putRecord(b)}`);
      const into = target();
      const { entries, bad } = into;
      await replayFile(file, 'journal-1', into, undefined, 5);
      expect(bad.map((x) => x.reason)).toEqual([
        `record at byte ${putRecord(a).length}: checksum mismatch`,
      ]);
      expect([...entries.keys()]).toEqual([a.id, b.id]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('record format: one query record per query and file', () => {
  const summary = {
    title: 'Top sources',
    metrics: ['bytes'],
    dimensions: ['AS_src'],
    time: 'last 1 h',
    devices: 'all devices',
    imageType: 'png',
  };
  /** Three ids of one query (two pending, sharing the flight's query object) and an image of another. */
  const sample = (): Entry[] => {
    const base = pendingEntry(40);
    const query = JSON.stringify({ n: 40, big: 'x'.repeat(3000) });
    const at = (ms: number): PendingEntry => ({
      ...base,
      id: formatId(base.hash, base.expiresAt + ms),
      expiresAt: base.expiresAt + ms,
      summary,
      query,
    });
    const err: ErrorEntry = (({ query: _q, ...rest }) => ({
      ...rest,
      kind: 'error' as const,
      status: 500,
      errorType: 'Kentik API error',
      message: 'a message with spaces, "quotes" and ünïcode',
    }))(at(2));
    return [at(0), at(1), err, { ...imageEntry(41, Buffer.from('png')), summary }];
  };
  const byId = (a: Entry, b: Entry): number => a.id.localeCompare(b.id);

  it('round-trips every kind through journal and snapshot, writing each query once per file', async () => {
    const root = await tempRoot();
    try {
      const store = new FsStore(root);
      await store.open();
      const entries = sample();
      await Promise.all(entries.map((e) => store.putEntry(e)));
      const text = await readFile((await journals(root))[0]!, 'utf8');
      // Query 40: one record with its query (its pending ids), query 41: one with its summary.
      expect(text.split('\n').filter((l) => l[9] === 'Q')).toHaveLength(2);
      expect(text.length).toBeLessThan(3000 + 4 * 400);
      const loaded = [...(await readStoredEntries(root)).values()].sort(byId);
      expect(loaded).toEqual([...entries].sort(byId));
      // Entries of one query share one summary and one query object.
      const [p0, p1] = loaded.filter((e) => e.kind === 'pending');
      expect(p0!.query).toBe(p1!.query);
      expect(p0!.summary).toBe(loaded.find((e) => e.kind === 'error')!.summary);

      await store.checkpoint(entries.concat(entries)); // the snapshot, once per query too
      const snap = await readFile(path.join(root, 'index.snapshot'), 'utf8');
      expect(snap.split('\n')[0]).toMatch(/^\{"kentik-image-cache-snapshot":3,"journal":\d+\}$/);
      expect(snap.split('\n').filter((l) => l[9] === 'Q')).toHaveLength(2);
      await store.close();
      const reopened = new FsStore(root);
      await reopened.open();
      const again = await reopened.loadEntries();
      expect(again.quarantined).toEqual([]);
      expect(again.entries.sort(byId)).toEqual([...entries].sort(byId));
      await reopened.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('reads ids of every form the id pattern allows, and refuses malformed ones', async () => {
    const root = await tempRoot();
    try {
      const base = imageEntry(70, Buffer.from('x'));
      const withId = (suffix: string, expiresAt: number): Entry => ({
        ...base,
        id: `${base.hash}_${suffix}`,
        expiresAt,
      });
      const good = [
        withId('4102444800', 4102444800000), // no fraction
        withId('4102444800.5', 4102444800500),
        withId('4102444800.123456789', 4102444800123),
        withId('4102444800.999', 4102444800999), // the usual form
        withId('41024448001.000', 41024448001000), // eleven digits of seconds
      ];
      const bad = [
        `E ${base.hash.toUpperCase()}_4102444800.999 1 image ${base.digest} image/png 1 1`,
        `E ${base.hash.slice(1)}x_4102444800.999 1 image ${base.digest} image/png 1 1`,
        `E ${base.hash}_41024448x0.999 1 image ${base.digest} image/png 1 1`,
        `E ${base.hash}_4102444800.99x 1 image ${base.digest} image/png 1 1`,
        `E ${base.hash}_4102444800.999 1 image ${base.digest} image/pnf 1 1`,
        `E ${base.hash}_4102444800.999 1 imagf ${base.digest} image/png 1 1`,
        `E ${base.hash}_4102444800.999 1 image ${base.digest} image/png 1`,
      ];
      await mkdir(path.join(root, 'entries'));
      await writeFile(
        path.join(root, 'entries', 'journal-1'),
        good.map(putRecord).join('') + bad.map(line).join(''),
      );
      const store = new FsStore(root);
      await store.open();
      const loaded = await store.loadEntries();
      expect(loaded.entries.sort(byId)).toEqual([...good].sort(byId));
      expect(loaded.quarantined.map((q) => q.reason.replace(/^record at byte \d+: /, ''))).toEqual([
        'entry record with a malformed id',
        'entry record with a malformed id',
        'entry record with a malformed id',
        'entry record with a malformed id',
        'image entry with unknown mime',
        'unknown kind "imagf"',
        'entry record without fetchedAt',
      ]);
      await store.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('loads a cache of the format before query records, and rewrites it at the next checkpoint', async () => {
    const root = await tempRoot();
    try {
      const entries = sample();
      const [a, b, c, d] = entries as [Entry, Entry, Entry, Entry];
      // As the previous version left it: a format-2 snapshot and a journal after it, `P` records.
      const p = (e: Entry): string => line('P ' + encodeEntry(e));
      await writeFile(
        path.join(root, 'index.snapshot'),
        '{"kentik-image-cache-snapshot":2,"journal":3}\n' + p(a) + p(b) + p(d),
      );
      await mkdir(path.join(root, 'entries'));
      await writeFile(
        path.join(root, 'entries', 'journal-3'),
        p(c) + line(`D ${d.id}`) + p({ ...d, createdAt: 5 }),
      );
      const expected = [a, b, c, { ...d, createdAt: 5 }].sort(byId);
      const store = new FsStore(root);
      await store.open();
      const loaded = await store.loadEntries();
      expect(loaded.quarantined).toEqual([]);
      expect(loaded.entries.sort(byId)).toEqual(expected);
      // Not rewritten on the way to readiness, but at the first checkpoint, whatever its size.
      expect(await journals(root)).toHaveLength(1);
      await store.checkpoint(loaded.entries);
      expect(await journals(root)).toEqual([]);
      const snap = await readFile(path.join(root, 'index.snapshot'), 'utf8');
      expect(snap.split('\n').filter((l) => l[9] === 'P')).toEqual([]);
      expect(snap.split('\n').filter((l) => l[9] === 'E')).toHaveLength(4);
      await store.close();
      expect([...(await readStoredEntries(root)).values()].sort(byId)).toEqual(expected);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('a damaged query record costs its pending entries (quarantined) and the summary of the others', async () => {
    const root = await tempRoot();
    try {
      let store = new FsStore(root);
      await store.open();
      const entries = sample();
      for (const e of entries) await store.putEntry(e); // one flush each: a record per line
      await store.close();
      const file = (await journals(root))[0]!;
      const lines = (await readFile(file, 'utf8')).split('\n');
      const q = lines.findIndex((l) => l[9] === 'Q');
      lines[q] = lines[q]!.replace('"Top sources"', '"Top sourcez"');
      await writeFile(file, lines.join('\n'));

      store = new FsStore(root);
      await store.open();
      const { entries: loaded, quarantined } = await store.loadEntries();
      expect(quarantined.map((x) => x.reason)).toEqual([
        expect.stringMatching(/^record at byte 0: checksum mismatch$/),
        expect.stringMatching(/pending entry without its query .* cannot be fetched$/),
        expect.stringMatching(/pending entry without its query .* cannot be fetched$/),
      ]);
      // The error entry of that query loads without its words; the other query is untouched.
      const [, , err, img] = entries as [Entry, Entry, Entry, Entry];
      expect(loaded.sort(byId)).toEqual([{ ...err, summary: undefined }, img].sort(byId));
      expect(await readdir(path.join(root, 'quarantine'))).toHaveLength(3);
      await store.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('ignores a torn tail whether it tears the query record or the entry after it', async () => {
    const root = await tempRoot();
    try {
      const [a] = sample() as [PendingEntry];
      const records = putRecord(a); // its query record, then its entry record
      const qEnd = records.indexOf('\n') + 1;
      for (const cut of [20, qEnd, qEnd + 30]) {
        await rm(path.join(root, 'entries'), { recursive: true, force: true });
        await mkdir(path.join(root, 'entries'));
        const img = imageEntry(50, Buffer.from('x'));
        await writeFile(
          path.join(root, 'entries', 'journal-1'),
          putRecord(img) + records.slice(0, cut),
        );
        const store = new FsStore(root);
        await store.open();
        expect(await store.loadEntries()).toEqual({ entries: [img], quarantined: [] });
        await store.close();
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('writes the query record again into a journal file recreated under the service', async () => {
    const root = await tempRoot();
    try {
      const store = new FsStore(root);
      await store.open();
      const [a, b] = sample() as [PendingEntry, PendingEntry];
      await store.putEntry(a);
      // CACHE_PATH/entries deleted and recreated by hand: a's record (and its query's) is gone.
      await rm(path.join(root, 'entries'), { recursive: true, force: true });
      await mkdir(path.join(root, 'entries'));
      await store.putEntry(b);
      const got = await readStoredEntries(root);
      expect([...got.values()]).toEqual([b]);
      await store.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('loadEntries({ expiredBefore })', () => {
  it('lists expired ids apart, of either record format, and forgets deleted ones', async () => {
    const root = await tempRoot();
    try {
      const now = Date.now();
      const live = pendingEntry(60, now + 60_000);
      const old = imageEntry(61, Buffer.from('x'), now - 1000);
      const oldV1 = pendingEntry(62, now - 2000);
      const deleted = imageEntry(63, Buffer.from('x'), now - 3000);
      await mkdir(path.join(root, 'entries'));
      await writeFile(
        path.join(root, 'entries', 'journal-1'),
        putRecord(live) +
          putRecord(old) +
          line('P ' + encodeEntry(oldV1)) +
          putRecord(deleted) +
          line(`D ${deleted.id}`),
      );
      const store = new FsStore(root);
      await store.open();
      const loaded = await store.loadEntries({ expiredBefore: now });
      expect(loaded.entries).toEqual([live]);
      expect(loaded.expired?.sort()).toEqual([old.id, oldV1.id].sort());
      expect(loaded.quarantined).toEqual([]);
      // Without the option, everything, as before.
      expect((await store.loadEntries()).entries).toHaveLength(3);
      await store.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
