import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsChartStore } from './fs-store.ts';
import { chartStoreContract, definition } from './store.contract.ts';

let dir: string;

chartStoreContract('FsChartStore', {
  async create() {
    dir = await mkdtemp(path.join(os.tmpdir(), 'kic-chart-store-'));
    const s = new FsChartStore(dir);
    await s.open();
    return s;
  },
  async reopen() {
    const s = new FsChartStore(dir);
    await s.open();
    return s;
  },
  async cleanup() {
    await rm(dir, { recursive: true, force: true });
  },
});

describe('FsChartStore on disk', () => {
  it('quarantines unreadable files and removes temp files at open', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'kic-chart-store-'));
    try {
      const good = new FsChartStore(root);
      await good.open();
      await good.put(definition('fine'), 10);
      const charts = path.join(root, 'charts');
      await writeFile(path.join(charts, 'chart-torn.json'), '{"v":1,"name":"to');
      await writeFile(path.join(charts, 'chart-liar.json'), (await readdir(charts)).join());
      await writeFile(path.join(charts, '.tmp-0123'), 'half a write');
      const quarantined: string[] = [];
      const s = new FsChartStore(root, { onQuarantine: (file) => quarantined.push(file) });
      await s.open();
      expect(quarantined.sort()).toEqual(['charts/chart-liar.json', 'charts/chart-torn.json']);
      expect((await s.list(undefined, 10)).charts.map((c) => c.definition.name)).toEqual(['fine']);
      expect((await readdir(charts)).sort()).toEqual(['chart-fine.json']);
      expect((await readdir(path.join(root, 'quarantine'))).length).toBe(2);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
