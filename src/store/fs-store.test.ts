import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeEntry } from '../cache/entry-codec.ts';
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
    await writeFile(path.join(root, 'entries', 'not-an-id.json'), '{}');
    const { quarantined } = await store.loadEntries();
    expect(quarantined.map((q) => q.name)).toEqual([path.join('entries', 'not-an-id.json')]);
    expect(await readdir(path.join(root, 'quarantine'))).toHaveLength(1);
    expect(await store.sweepTemporary()).toBe(2);
    expect(await readdir(path.join(root, 'entries'))).toEqual([]);
    await rm(root, { recursive: true, force: true });
  });
});
