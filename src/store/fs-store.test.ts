import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { encodeEntry } from '../domain/entry-codec.ts';
import { FsStore, readStoredEntries, replayFile, type Bad } from './fs-store.ts';
import { putRecord } from './journal.ts';
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
    expect(text.split('\n').filter(Boolean)).toHaveLength(200);
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
        const entries = new Map();
        const bad: Bad[] = [];
        let header = '';
        const n = await replayFile(
          file,
          'journal-1',
          entries,
          bad,
          (line) => ((header = line), true),
          chunk,
        );
        expect({ chunk, n, header, ids: [...entries.keys()], bad }).toEqual({
          chunk,
          n: 3,
          header: '{"header":1}',
          ids: [a.id, b.id],
          bad: [],
        });
        expect(entries.get(b.id)).toEqual(b);
      }
      // A damaged record in the middle is reported with its byte offset in the file.
      await writeFile(file, `${putRecord(a)}00000000 P {}\n${putRecord(b)}`);
      const bad: Bad[] = [];
      const entries = new Map();
      await replayFile(file, 'journal-1', entries, bad, undefined, 5);
      expect(bad.map((x) => x.reason)).toEqual([
        `record at byte ${putRecord(a).length}: checksum mismatch`,
      ]);
      expect([...entries.keys()]).toEqual([a.id, b.id]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
