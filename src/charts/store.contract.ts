import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ChartDefinition, ChartState } from './chart.ts';
import type { ChartStore } from './store.ts';

export interface ChartStoreHarness {
  /** A fresh, empty store (opened). */
  create(): Promise<ChartStore>;
  /** The same data seen by a new store, as after a restart (filesystem) or from another replica (Redis). */
  reopen(): Promise<ChartStore>;
  cleanup?(): Promise<void>;
}

export function definition(name: string, refresh = 300): ChartDefinition {
  return {
    name,
    query: { queries: [{ bucket: 'Left +Y Axis', query: { metric: ['bytes'] } }], n: name },
    refresh,
    createdAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_000,
    generation: randomBytes(8).toString('hex'),
  };
}

export function goodState(def: ChartDefinition): ChartState {
  return {
    generation: def.generation,
    image: {
      imageId: `${'a'.repeat(64)}_1700000999.000`,
      digest: 'b'.repeat(64),
      mime: 'image/png',
      fetchedAt: 1_700_000_100_000,
    },
    dueAt: 1_700_000_400_000,
    lastAttemptAt: 1_700_000_100_500,
    failures: 0,
  };
}

/** What every ChartStore must do; run against FsChartStore and RedisChartStore. */
export function chartStoreContract(label: string, harness: ChartStoreHarness): void {
  describe(`ChartStore contract: ${label}`, () => {
    let store: ChartStore;
    const others: ChartStore[] = [];
    const reopen = async (): Promise<ChartStore> => {
      const s = await harness.reopen();
      others.push(s);
      return s;
    };
    beforeEach(async () => {
      store = await harness.create();
    });
    afterEach(async () => {
      await store.close();
      for (const s of others.splice(0)) await s.close();
      await harness.cleanup?.();
    });

    it('put creates, then replaces; get returns the definition with an empty state', async () => {
      const d = definition('alpha');
      expect(await store.put(d, 10)).toBe('created');
      expect(await store.get('alpha')).toEqual({
        definition: d,
        state: { generation: d.generation, failures: 0 },
      });
      const d2 = { ...definition('alpha', 600), createdAt: d.createdAt };
      expect(await store.put(d2, 10)).toBe('replaced');
      expect((await store.get('alpha'))?.definition).toEqual(d2);
      expect(await store.get('beta')).toBeUndefined();
    });

    it('state lands only on the generation it was computed for', async () => {
      const d = definition('gen');
      await store.put(d, 10);
      expect(await store.putState('gen', goodState(d))).toBe(true);
      expect((await store.get('gen'))?.state).toEqual(goodState(d));
      // Replacing the chart clears its state; a late refresh of the old one cannot land.
      const d2 = definition('gen');
      await store.put(d2, 10);
      expect((await store.get('gen'))?.state).toEqual({ generation: d2.generation, failures: 0 });
      expect(await store.putState('gen', goodState(d))).toBe(false);
      expect((await store.get('gen'))?.state.image).toBeUndefined();
      // Nor on a deleted chart.
      expect(await store.delete('gen')).toBe(true);
      expect(await store.putState('gen', goodState(d2))).toBe(false);
      expect(await store.get('gen')).toBeUndefined();
    });

    it('delete reports whether the chart existed', async () => {
      await store.put(definition('del'), 10);
      expect(await store.delete('del')).toBe(true);
      expect(await store.delete('del')).toBe(false);
      expect(await store.count()).toBe(0);
    });

    it('put refuses a new chart beyond maxCount but replaces existing ones', async () => {
      await store.put(definition('one'), 2);
      await store.put(definition('two'), 2);
      expect(await store.put(definition('three'), 2)).toBe('limit');
      expect(await store.get('three')).toBeUndefined();
      expect(await store.put(definition('two', 900), 2)).toBe('replaced');
      expect(await store.count()).toBe(2);
    });

    it('lists in byte order, paged with a next cursor', async () => {
      const names = ['b', 'a.1', 'A', 'a-2', 'a_3', 'z', '0', 'a'];
      for (const n of names) await store.put(definition(n), 100);
      const sorted = [...names].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.list(after, 3);
        expect(page.total).toBe(names.length);
        expect(page.charts.length).toBeLessThanOrEqual(3);
        seen.push(...page.charts.map((c) => c.definition.name));
        if (page.next === undefined) break;
        after = page.next;
      }
      expect(seen).toEqual(sorted);
      const exact = await store.list(undefined, names.length);
      expect(exact.next).toBeUndefined();
      expect((await store.list('z', 10)).charts).toEqual([]);
    });

    it('what is written is what another store over the same data reads', async () => {
      const d = definition('persist');
      await store.put(d, 10);
      await store.putState('persist', {
        ...goodState(d),
        lastError: { status: 503, type: 'Kentik API unavailable', message: 'down', at: 5 },
        failures: 2,
        retryAt: 99,
      });
      const other = await reopen();
      expect(await other.get('persist')).toEqual(await store.get('persist'));
      expect(await other.count()).toBe(1);
    });

    it('a lock is held by one caller until released or expired', async () => {
      const t1 = await store.lock('locked', 10_000);
      expect(t1).toBeTypeOf('string');
      expect(await store.lock('locked', 10_000)).toBeUndefined();
      expect(await store.lock('other', 10_000)).toBeTypeOf('string');
      await store.unlock('locked', 'not-the-token');
      expect(await store.lock('locked', 10_000)).toBeUndefined();
      await store.unlock('locked', t1!);
      const t2 = await store.lock('locked', 30);
      expect(t2).toBeTypeOf('string');
      await new Promise((r) => setTimeout(r, 60)); // the lock's own expiry is what is tested
      expect(await store.lock('locked', 10_000)).toBeTypeOf('string');
    });

    it('concurrent lock attempts: exactly one wins', async () => {
      const tokens = await Promise.all(
        Array.from({ length: 20 }, () => store.lock('race', 10_000)),
      );
      expect(tokens.filter((t) => t !== undefined)).toHaveLength(1);
    });

    it('rejects invalid names rather than touching a path or key outside its own', async () => {
      await expect(store.put(definition('../evil'), 10)).rejects.toThrow(/invalid chart name/);
      await expect(store.get('a/b')).rejects.toThrow(/invalid chart name/);
    });
  });
}
