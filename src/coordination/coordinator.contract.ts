import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ImageEntry } from '../domain/entry.ts';
import { bytesDigest } from '../domain/hash.ts';
import { formatId } from '../domain/ids.ts';
import {
  PendingCapError,
  type Coordinator,
  type CoordinatorEvent,
  type DecideInput,
  type Lease,
  type Outcome,
} from './coordinator.ts';

export const LEASE_SECONDS = 5;
export const REUSE_WINDOW_SECONDS = 60;
export const CONCURRENCY = 2;
export const silentLog = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

export interface CoordinatorHarness {
  /** A fresh, empty index (not opened yet), with the settings above. */
  create(): Promise<Coordinator>;
  /** Another instance on the same index, as a second process would have (shared backends). */
  peer?(): Promise<Coordinator>;
  /** A new instance on the same index after the first went away (a restart). */
  reopen?(): Promise<Coordinator>;
  cleanup?(): Promise<void>;
}

const hashOf = (name: string): string => bytesDigest(Buffer.from(`query ${name} ${Math.random()}`));
const imageOutcome = (bytes: Buffer, fetchedAt = Date.now()): Outcome => ({
  kind: 'image',
  digest: bytesDigest(bytes),
  mime: 'image/png',
  size: bytes.length,
  fetchedAt,
});
/** A decide() input with the query's JSON text beside it, as the orchestrator sends it. */
export const withJson = (input: Omit<DecideInput, 'queryJson'>): DecideInput => ({
  ...input,
  queryJson: JSON.stringify(input.query),
});
const errorOutcome: Outcome = {
  kind: 'error',
  status: 500,
  errorType: 'Kentik API error',
  message: 'Kentik API answered 500: boom',
};

/**
 * The behaviour every Coordinator must have: the sharing rules, leases and takeover, settle,
 * content-addressed bytes, the read API and change events. Each backend's test file calls this.
 */
export function coordinatorContract(name: string, harness: CoordinatorHarness): void {
  describe(`Coordinator contract: ${name}`, () => {
    let c: Coordinator;
    let events: CoordinatorEvent[];
    const extra: Coordinator[] = [];
    beforeEach(async () => {
      c = await harness.create();
      events = [];
      c.onEvent((e) => events.push(e));
      await c.open();
    });
    afterEach(async () => {
      for (const x of extra.splice(0)) await x.close().catch(() => {});
      await c.close().catch(() => {});
      await harness.cleanup?.();
    });

    const miss = async (
      co: Coordinator,
      hash: string,
      ttlMs: number,
      now = Date.now(),
    ): Promise<{ id: string; lease: Lease }> => {
      const d = await co.decide(
        withJson({ hash, query: { q: hash }, expiresAt: now + ttlMs, now }),
      );
      expect(d.result).toBe('miss');
      if (d.result !== 'miss') throw new Error('expected a miss');
      return { id: d.id, lease: d.lease };
    };

    it('rule 3 then rule 2 then rule 1: new flight, shared flight, hit; stored before the id is out', async () => {
      const hash = hashOf('rules');
      const now = Date.now();
      const first = await miss(c, hash, 60_000, now);
      expect(first.id).toBe(formatId(hash, now + 60_000));
      expect(first.lease).toMatchObject({ hash, id: first.id, query: JSON.stringify({ q: hash }) });
      expect(await c.getEntry(first.id)).toMatchObject({
        kind: 'pending',
        query: JSON.stringify({ q: hash }),
      });

      const longer = await c.decide(
        withJson({ hash, query: { q: hash }, expiresAt: now + 120_000, now }),
      );
      expect(longer).toMatchObject({ result: 'shared', entry: { kind: 'pending' } });
      expect((await c.getEntry(longer.id))?.kind).toBe('pending');

      const shorter = await c.decide(
        withJson({ hash, query: { q: hash }, expiresAt: now + 90_000, now }),
      );
      expect(shorter).toEqual({ result: 'hit', id: longer.id });
    });

    it('with maxPending, refuses only a new flight, once that many flights exist', async () => {
      const now = Date.now();
      const a = hashOf('cap-a');
      const { lease } = await miss(c, a, 60_000, now);
      const cap = { maxPending: 1 };
      const other = withJson({
        hash: hashOf('cap-b'),
        query: {},
        expiresAt: now + 60_000,
        now,
        ...cap,
      });
      const refused = await c.decide(other).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(refused).toBeInstanceOf(PendingCapError);
      expect((refused as PendingCapError).pending).toBe(1);
      // Joining the flight in progress, or a hit, is no new upstream work.
      const q = { q: a };
      const shared = await c.decide(
        withJson({ hash: a, query: q, expiresAt: now + 120_000, now, ...cap }),
      );
      expect(shared.result).toBe('shared');
      const hit = await c.decide(
        withJson({ hash: a, query: q, expiresAt: now + 30_000, now, ...cap }),
      );
      expect(hit.result).toBe('hit');
      await c.settle(lease, errorOutcome, now);
      expect((await c.decide(other)).result).toBe('miss');
    });

    it('dropUnwanted ends a flight only once none of its ids is live', async () => {
      const now = Date.now();
      const h = hashOf('unwanted');
      const { lease } = await miss(c, h, 60_000, now);
      expect(await c.dropUnwanted(lease, now)).toBe(false);
      // Past every id's expiry: nobody could see the answer.
      expect(await c.dropUnwanted(lease, now + 61_000)).toBe(true);
      expect(await c.renewLease(lease, now)).toBe(false);
      expect(await c.settle(lease, errorOutcome, now)).toEqual({ accepted: false });
      // The next POST of the query starts a new flight.
      await miss(c, h, 120_000, now);
    });

    it('never hands out the same id twice for one query and millisecond', async () => {
      const hash = hashOf('unique');
      const now = Date.now();
      const a = await miss(c, hash, 60_000, now);
      await c.settle(a.lease, errorOutcome, now);
      // Same expiry asked again: the error is not reused, and the id must differ.
      const b = await miss(c, hash, 60_000, now);
      expect(b.id).not.toBe(a.id);
      expect(b.id).toBe(formatId(hash, now + 60_001));
      expect((await c.getEntry(a.id))?.kind).toBe('error');
    });

    it('settle writes the result to every id waiting on the flight and says so', async () => {
      const hash = hashOf('settle');
      const now = Date.now();
      const { id, lease } = await miss(c, hash, 60_000, now);
      const ids = [id];
      for (let i = 1; i <= 5; i++) {
        const d = await c.decide(
          withJson({ hash, query: {}, expiresAt: now + 60_000 + i * 1000, now }),
        );
        expect(d.result).toBe('shared');
        ids.push(d.id);
      }
      const bytes = randomBytes(3000);
      await c.putBlob(bytesDigest(bytes), bytes, now + 10_000);
      const result = await c.settle(lease, imageOutcome(bytes), Date.now());
      expect(result.accepted).toBe(true);
      expect(result.accepted && [...result.ids].sort()).toEqual([...ids].sort());
      for (const x of ids) {
        const e = (await c.getEntry(x)) as ImageEntry;
        expect(e).toMatchObject({ kind: 'image', digest: bytesDigest(bytes), size: 3000 });
        expect(e.expiresAt).toBe(Number(x.split('_')[1]) * 1000);
      }
      expect((await c.getBlob(bytesDigest(bytes)))?.equals(bytes)).toBe(true);
      expect(events).toContainEqual(expect.objectContaining({ type: 'settled', hash }));
      // Settled once: the same lease cannot settle again.
      expect((await c.settle(lease, errorOutcome, Date.now())).accepted).toBe(false);
      expect((await c.getEntry(id))?.kind).toBe('image');
    });

    it('rule 2 reuses an image fetched within REUSE_WINDOW; errors are never shared', async () => {
      const hash = hashOf('reuse');
      const now = Date.now();
      const a = await miss(c, hash, 10_000, now);
      const bytes = randomBytes(500);
      await c.putBlob(bytesDigest(bytes), bytes, now + 10_000);
      await c.settle(a.lease, imageOutcome(bytes, now), now);
      const reused = await c.decide(
        withJson({ hash, query: {}, expiresAt: now + 600_000, now: now + 1 }),
      );
      expect(reused).toMatchObject({
        result: 'shared',
        entry: { kind: 'image', digest: bytesDigest(bytes) },
      });
      // Outside the window: a new fetch.
      const later = now + REUSE_WINDOW_SECONDS * 1000 + 1000;
      await miss(c, hash, 10_000_000, later);

      const h2 = hashOf('error');
      const e = await miss(c, h2, 10_000, now);
      await c.settle(e.lease, errorOutcome, now);
      await miss(c, h2, 5_000, now + 1);
    });

    it('a lease is renewed by its holder; once it runs out another takes over and the late result is rejected', async () => {
      const hash = hashOf('takeover');
      const now = Date.now();
      const { id, lease } = await miss(c, hash, 600_000, now);
      expect(await c.renewLease(lease, now + 1000)).toBe(true);
      expect(await c.claimOrphans(now + 2000)).toEqual([]);
      const later = now + 1000 + LEASE_SECONDS * 1000 + 1;
      const claimed = await c.claimOrphans(later);
      expect(claimed).toHaveLength(1);
      const taken = claimed[0]!;
      expect(taken).toMatchObject({ hash, id, query: JSON.stringify({ q: hash }) });
      expect(taken.token).not.toBe(lease.token);
      // Claimed once only.
      expect(await c.claimOrphans(later)).toEqual([]);
      // The paused holder comes back: its renewal fails and its result is rejected.
      expect(await c.renewLease(lease, later + 1)).toBe(false);
      const wrong = randomBytes(100);
      expect((await c.settle(lease, imageOutcome(wrong), later + 2)).accepted).toBe(false);
      expect((await c.getEntry(id))?.kind).toBe('pending');
      const right = randomBytes(100);
      await c.putBlob(bytesDigest(right), right, later + 10_000);
      expect((await c.settle(taken, imageOutcome(right), later + 3)).accepted).toBe(true);
      expect(await c.getEntry(id)).toMatchObject({ kind: 'image', digest: bytesDigest(right) });
    });

    it('a released lease can be claimed at once', async () => {
      const hash = hashOf('release');
      const now = Date.now();
      const { lease } = await miss(c, hash, 600_000, now);
      await c.releaseLease(lease);
      const claimed = await c.claimOrphans(now + 1);
      expect(claimed.map((l) => l.hash)).toEqual([hash]);
    });

    it('stores bytes once by digest, raw, and drops every id using bytes that were lost', async () => {
      const hash = hashOf('blob');
      const now = Date.now();
      const { id, lease } = await miss(c, hash, 600_000, now);
      const bytes = randomBytes(70_000);
      const digest = bytesDigest(bytes);
      await c.putBlob(digest, bytes, now + 10_000);
      await c.putBlob(digest, bytes, now + 5_000);
      expect((await c.getBlob(digest))?.equals(bytes)).toBe(true);
      await c.settle(lease, imageOutcome(bytes), now);
      const counts = await c.counts(Date.now());
      expect(counts.storedBytes).toBe(70_000);
      events.length = 0;
      await c.dropBlob(digest, 'lost', id);
      expect(await c.getEntry(id)).toBeUndefined();
      expect(events).toContainEqual(
        expect.objectContaining({ type: 'deleted', ids: expect.arrayContaining([id]) }),
      );
      expect(await c.getBlob(bytesDigest(randomBytes(8)))).toBeUndefined();
    });

    it('counts live entries by kind, and pages newest first with a cursor that loses nothing', async () => {
      const now = Date.now();
      const made: string[] = [];
      for (let i = 0; i < 25; i++) {
        const { id, lease } = await miss(c, hashOf(`page ${i}`), 600_000, now + i);
        made.push(id);
        if (i % 5 === 0) await c.settle(lease, errorOutcome, now + i);
      }
      const counts = await c.counts(now + 100);
      expect(counts).toMatchObject({ pending: 20, error: 5, image: 0 });
      // Expired entries are not counted.
      expect((await c.counts(now + 700_000)).pending).toBe(0);

      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await c.page({ cursor, limit: 7 }, now + 100);
        expect(page.entries.length).toBeLessThanOrEqual(7);
        seen.push(...page.entries.map((e) => e.id));
        cursor = page.next;
        pages++;
      } while (cursor !== undefined && pages < 20);
      expect(seen).toEqual([...made].reverse());

      const errors = await c.page({ limit: 1000, kind: 'error' }, now + 100);
      expect(errors.entries.map((e) => e.kind)).toEqual(Array(5).fill('error'));
      expect(errors.next).toBeUndefined();
      const active = await c.page({ limit: 1000, kind: 'active' }, now + 100);
      expect(active.entries).toHaveLength(5);
    });

    it('maintenance forgets expired ids and the bytes only they used', async () => {
      const hash = hashOf('maintain');
      const now = Date.now();
      const { id, lease } = await miss(c, hash, 400, now);
      const bytes = randomBytes(1234);
      await c.putBlob(bytesDigest(bytes), bytes, now + 400);
      // Fetched long ago: REUSE_WINDOW does not keep the bytes either.
      const old = now - REUSE_WINDOW_SECONDS * 1000 - 1000;
      await c.settle(lease, imageOutcome(bytes, old), now);
      expect(await c.counts(Date.now())).toMatchObject({ image: 1, storedBytes: 1234 });
      let expired = 0;
      await expect
        .poll(
          async () => {
            expired += (await c.maintain(Date.now())).expired;
            return (await c.counts(Date.now())).storedBytes;
          },
          { interval: 100, timeout: 5000 },
        )
        .toBe(0);
      expect(expired).toBe(1);
      expect(await c.counts(Date.now())).toMatchObject({ image: 0, pending: 0 });
      expect(await c.getEntry(id)).toBeUndefined();
      expect((await c.page({ limit: 10 }, Date.now())).entries).toEqual([]);
    });

    it(`limits upstream slots to ${CONCURRENCY} at once and holds calls back after a Retry-After`, async () => {
      const a = await c.acquireSlot();
      const b = await c.acquireSlot();
      let third = false;
      const waiting = c.acquireSlot().then((s) => {
        third = true;
        return s;
      });
      await new Promise((r) => setTimeout(r, 150));
      expect(third).toBe(false);
      await a.release();
      const s = await waiting;
      expect(third).toBe(true);
      await b.release();
      await s.release();
      // An aborted wait gives up.
      const x = await c.acquireSlot();
      const y = await c.acquireSlot();
      const ac = new AbortController();
      const aborted = c.acquireSlot(ac.signal);
      ac.abort(new Error('gone'));
      await expect(aborted).rejects.toThrow();
      await x.release();
      await y.release();

      const until = Date.now() + 5000;
      await c.holdUpstream(until);
      await c.holdUpstream(until - 3000); // holds only grow
      expect(await c.upstreamHeldUntil()).toBe(until);
    });

    if (harness.reopen) {
      it('a flight pending when the process went away is an orphan after restart', async () => {
        const hash = hashOf('restart');
        const now = Date.now();
        const { id } = await miss(c, hash, 600_000, now);
        await c.close();
        c = await harness.reopen!();
        await c.open();
        const claimed = await c.claimOrphans(Date.now() + LEASE_SECONDS * 1000 + 1);
        expect(claimed).toEqual([expect.objectContaining({ hash, id })]);
      });
    }

    if (harness.peer) {
      describe('two instances, one index', () => {
        let p: Coordinator;
        let peerEvents: CoordinatorEvent[];
        beforeEach(async () => {
          p = await harness.peer!();
          peerEvents = [];
          p.onEvent((e) => peerEvents.push(e));
          await p.open();
          extra.push(p);
        });

        it('an id made by one is read by the other; rules are decided across both', async () => {
          const hash = hashOf('peer');
          const now = Date.now();
          const { id, lease } = await miss(c, hash, 60_000, now);
          expect((await p.getEntry(id))?.kind).toBe('pending');
          const joined = await p.decide(
            withJson({ hash, query: {}, expiresAt: now + 120_000, now }),
          );
          expect(joined.result).toBe('shared');
          expect(
            await c.decide(withJson({ hash, query: {}, expiresAt: now + 100_000, now })),
          ).toEqual({
            result: 'hit',
            id: joined.id,
          });
          const bytes = randomBytes(1000);
          await c.putBlob(bytesDigest(bytes), bytes, now + 10_000);
          const settled = await c.settle(lease, imageOutcome(bytes), Date.now());
          expect(settled.accepted && [...settled.ids].sort()).toEqual([id, joined.id].sort());
          // The other instance hears about it (pub/sub carries the hash) and reads the result.
          await expect
            .poll(() => peerEvents.some((e) => e.type === 'settled' && e.hash === hash))
            .toBe(true);
          expect(await p.getEntry(joined.id)).toMatchObject({ kind: 'image' });
          expect((await p.getBlob(bytesDigest(bytes)))?.equals(bytes)).toBe(true);
        });

        it('concurrent POSTs of one query on both make exactly one flight', async () => {
          const hash = hashOf('race');
          const now = Date.now();
          const all = await Promise.all(
            Array.from({ length: 40 }, (_, i) =>
              (i % 2 ? c : p).decide(
                withJson({ hash, query: {}, expiresAt: now + 60_000 + i, now }),
              ),
            ),
          );
          expect(all.filter((d) => d.result === 'miss')).toHaveLength(1);
        });

        it('the peer takes over a flight whose holder stopped renewing; the holder is rejected', async () => {
          const hash = hashOf('peer-takeover');
          const now = Date.now();
          const { id, lease } = await miss(c, hash, 600_000, now);
          const later = now + LEASE_SECONDS * 1000 + 1;
          const [taken] = await p.claimOrphans(later);
          expect(taken).toMatchObject({ hash, id });
          expect(await c.claimOrphans(later)).toEqual([]);
          expect((await c.settle(lease, errorOutcome, later)).accepted).toBe(false);
          expect((await p.settle(taken!, errorOutcome, later)).accepted).toBe(true);
          expect((await c.getEntry(id))?.kind).toBe('error');
        });

        it('upstream slots and the Retry-After hold are shared', async () => {
          const a = await c.acquireSlot();
          const b = await p.acquireSlot();
          let third = false;
          const waiting = p.acquireSlot().then((s) => ((third = true), s));
          await new Promise((r) => setTimeout(r, 300));
          expect(third).toBe(false);
          await a.release();
          await (await waiting).release();
          await b.release();
          const until = Date.now() + 4000;
          await c.holdUpstream(until);
          expect(await p.upstreamHeldUntil()).toBe(until);
        });

        it('lost bytes are announced to the peer, which drops its copies', async () => {
          const hash = hashOf('peer-drop');
          const now = Date.now();
          const { id, lease } = await miss(c, hash, 600_000, now);
          const bytes = randomBytes(200);
          const digest = bytesDigest(bytes);
          await c.putBlob(digest, bytes, now + 10_000);
          await c.settle(lease, imageOutcome(bytes), now);
          await c.dropBlob(digest, 'damaged', id);
          await expect
            .poll(() =>
              peerEvents.some(
                (e) => e.type === 'deleted' && e.digests.includes(digest) && e.ids.includes(id),
              ),
            )
            .toBe(true);
          expect(await p.getEntry(id)).toBeUndefined();
          expect(await p.getBlob(digest)).toBeUndefined();
          expect((await p.counts(Date.now())).storedBytes).toBe(0);
        });

        it('a released lease is announced so the peer can claim it at once', async () => {
          const hash = hashOf('handover');
          const { lease } = await miss(c, hash, 600_000);
          await c.releaseLease(lease);
          await expect
            .poll(() => peerEvents.some((e) => e.type === 'orphaned' && e.hash === hash))
            .toBe(true);
          expect((await p.claimOrphans(Date.now())).map((l) => l.hash)).toEqual([hash]);
        });
      });
    }
  });
}
