import { describe, expect, it } from 'vitest';
import type { Lease } from '../coordination/coordinator.ts';
import { LeaseQueue } from './lease-queue.ts';

const lease = (i: number): Lease => ({ hash: `h${i}`, token: `t${i}`, query: '{}', id: `id${i}` });

describe('LeaseQueue', () => {
  it('is first in, first out across the compaction of its front', () => {
    const q = new LeaseQueue();
    const out: string[] = [];
    for (let i = 0; i < 5000; i++) {
      q.push(lease(i));
      if (i % 3 === 2) out.push(q.shift()!.token);
    }
    expect(q.length).toBe(5000 - out.length);
    for (let l = q.shift(); l; l = q.shift()) out.push(l.token);
    expect(out).toEqual(Array.from({ length: 5000 }, (_, i) => `t${i}`));
    expect(q.length).toBe(0);
    expect(q.shift()).toBeUndefined();
  });

  it('iterates and drains what is left, in order', () => {
    const q = new LeaseQueue();
    for (let i = 0; i < 10; i++) q.push(lease(i));
    q.shift();
    const left = ['t1', 't2', 't3', 't4', 't5', 't6', 't7', 't8', 't9'];
    expect([...q].map((l) => l.token)).toEqual(left);
    expect(q.drain().map((l) => l.token)).toEqual(left);
    expect(q.length).toBe(0);
    q.push(lease(42));
    expect(q.shift()?.token).toBe('t42');
  });
});
