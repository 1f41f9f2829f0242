import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeEntry } from '../domain/entry-codec.ts';
import { FsStore } from './fs-store.ts';
import { pendingEntry, storeContract } from './store.contract.ts';

let dir: string;
let planted = 0;

storeContract('FsStore', {
  async create() {
    dir = await mkdtemp(path.join(os.tmpdir(), 'kic-fs-store-'));
    return new FsStore(dir);
  },
  async plantBadRecord(_store, kind) {
    const e = pendingEntry(1000 + planted++);
    const text = encodeEntry(e);
    const content = {
      garbage: '\u0000\u0001not json at all',
      empty: '',
      truncated: text.slice(0, text.length / 2),
      'wrong-version': text.replace('"v":1', '"v":99'),
    }[kind];
    await writeFile(path.join(dir, 'entries', `${e.id}.json`), content);
  },
  async cleanup() {
    await rm(dir, { recursive: true, force: true });
  },
});

describe('FsStore specifics', () => {
  it('sweeps temp files left by an interrupted write, and moves bad files to quarantine/', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'kic-fs-store-'));
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
    await rm(root, { recursive: true, force: true });
  });

  it('quarantines a damaged snapshot and reads the entry files instead; skips a torn line', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'kic-fs-store-'));
    const store = new FsStore(root);
    await store.open();
    const a = pendingEntry(1);
    const p2 = pendingEntry(2); // one call: two would read the clock twice, and id and expiresAt could disagree
    const b = { ...a, id: p2.id, hash: p2.hash, expiresAt: p2.expiresAt };
    await store.putEntry(a);
    await store.putEntry(b);
    const snapshot = path.join(root, 'index.snapshot');
    await writeFile(snapshot, 'garbage\n{"v":1');
    let { entries, quarantined } = await store.loadEntries();
    expect(entries).toHaveLength(2);
    expect(quarantined.map((q) => q.name)).toEqual(['index.snapshot']);
    // A valid header with a torn last line: the good lines count, the torn one is read from its file.
    const errorEntry = {
      id: a.id,
      hash: a.hash,
      expiresAt: a.expiresAt,
      createdAt: a.createdAt,
      kind: 'error' as const,
      status: 500,
      errorType: 'Kentik API error',
      message: 'x',
    };
    await store.putEntry(errorEntry);
    await store.checkpoint([errorEntry]);
    const text = await readFile(snapshot, 'utf8');
    await writeFile(snapshot, text.trimEnd().slice(0, -5));
    ({ entries, quarantined } = await store.loadEntries());
    expect(quarantined).toEqual([]);
    expect(entries.find((e) => e.id === a.id)).toEqual(errorEntry);
    await rm(root, { recursive: true, force: true });
  });
});
