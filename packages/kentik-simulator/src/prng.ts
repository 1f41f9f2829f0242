/**
 * Small deterministic random helpers. Everything the simulator draws (fault probabilities,
 * jitter, series names, traffic values) comes from here, so a given seed or query replays
 * exactly.
 */

/** A source of uniform numbers in [0, 1). */
export type Rng = () => number;

/** mulberry32: a tiny, fast 32-bit PRNG; good enough for simulation, not for secrets. */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Finaliser of a 32-bit integer hash (lowbias32): spreads every input bit over the output. */
export function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Hash a list of numbers to 32 bits. Each part is split into two 32-bit halves, so
 * millisecond timestamps and other values above 2^32 hash without collisions.
 */
export function hash32(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    const lo = p >>> 0;
    const hi = Math.floor(p / 4294967296) >>> 0;
    h = mix32(h ^ mix32(lo + 0x9e3779b9));
    h = mix32(h ^ mix32(hi + 0x85ebca6b));
  }
  return h;
}

/** A uniform number in [0, 1) that is a pure function of its inputs. */
export function unitHash(...parts: number[]): number {
  return hash32(...parts) / 4294967296;
}

/** A 32-bit seed from the first 8 hex digits of a digest (e.g. a query hash). */
export function seedFromHex(hex: string): number {
  const n = Number.parseInt(hex.slice(0, 8), 16);
  return Number.isFinite(n) ? n >>> 0 : 0;
}

/** Uniform number in [min, max). */
export function between(rng: Rng, min: number, max: number): number {
  return min + (max - min) * rng();
}

/** Fisher–Yates shuffle into a new array. */
export function shuffled<T>(rng: Rng, items: readonly T[]): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const tmp = out[i] as T;
    out[i] = out[j] as T;
    out[j] = tmp;
  }
  return out;
}

/**
 * Weighted sampling without replacement (Efraimidis–Spirakis): earlier items in `items` are
 * likelier to come first, so "popular" names (Google, Netflix, TCP, port 443) usually rank high.
 */
export function popularityOrder<T>(rng: Rng, items: readonly T[], skew = 2): T[] {
  return items
    .map((item, i) => ({ item, key: Math.pow(rng(), Math.pow(i + 1, skew)) }))
    .sort((a, b) => b.key - a.key)
    .map((e) => e.item);
}
