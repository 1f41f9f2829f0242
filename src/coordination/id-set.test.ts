import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addId, eachId, idArray, idCount, removeId, type Ids } from './id-set.ts';

describe('id sets', () => {
  it('behave as a Set through any adds and removes, whatever form they take', () => {
    const id = fc.integer({ min: 0, max: 40 }).map((n) => `id-${n}`);
    // Three adds for one remove: sets grow past the array size, and shrink again.
    const op = fc.tuple(
      fc.integer({ min: 0, max: 3 }).map((n) => n > 0),
      id,
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        let ids: Ids;
        const model = new Set<string>();
        for (const [add, x] of ops) {
          if (add) {
            ids = addId(ids, x);
            model.add(x);
          } else {
            ids = removeId(ids, x);
            model.delete(x);
          }
          expect(idCount(ids)).toBe(model.size);
          expect([...eachId(ids)]).toEqual([...model]); // insertion order too
          // The smallest form for the size: nothing for none, the string for one.
          if (model.size === 0) expect(ids).toBeUndefined();
          if (model.size === 1) expect(ids).toBe([...model][0]);
        }
        const copy = idArray(ids);
        for (const x of copy) ids = removeId(ids, x);
        expect(copy).toEqual([...model]);
        expect(ids).toBeUndefined();
      }),
    );
  });

  it('go back to the string when a set that grew past the array size shrinks to one', () => {
    let ids: Ids;
    const all = Array.from({ length: 20 }, (_, i) => `id-${i}`);
    for (const x of all) ids = addId(ids, x);
    expect(ids).toBeInstanceOf(Set);
    for (const x of all.slice(1)) ids = removeId(ids, x);
    expect(ids).toBe('id-0');
    expect(removeId(ids, 'id-0')).toBeUndefined();
  });
});
