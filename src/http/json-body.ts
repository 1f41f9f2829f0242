import type { CanonicalQuery } from '../domain/hash.ts';
import { AppError } from '../errors.ts';

/**
 * JSON.parse, plus a refusal of `__proto__` keys and `constructor.prototype` (what fastify's default
 * parser refuses too): JSON.parse itself makes them harmless own properties, but code that later
 * copies or merges the object could be tricked by them.
 */
export function parseJsonBody(text: string): unknown {
  if (text.length === 0) {
    throw new AppError(
      400,
      'Validation error',
      'The body is empty: send {"api_query": {…}, "ttl": seconds} as JSON.',
      ['body'],
    );
  }
  let poisoned: string | undefined;
  let value: unknown;
  try {
    // A reviver makes JSON.parse five times slower. A key can only be `__proto__` or `constructor`
    // if the text holds that word, or hides it behind a \u escape: without either, none can be.
    value = mayHidePoison(text)
      ? JSON.parse(text, function (key, v: unknown) {
          if (key === '__proto__') poisoned = '"__proto__"';
          else if (key === 'constructor' && typeof v === 'object' && v !== null && 'prototype' in v)
            poisoned = '"constructor" with "prototype"';
          return v;
        })
      : JSON.parse(text);
  } catch (err) {
    throw new AppError(
      400,
      'Invalid JSON',
      `The body is not valid JSON (${(err as Error).message.slice(0, 200)}). Send {"api_query": {…}, "ttl": seconds}.`,
      ['body'],
      { cause: err },
    );
  }
  if (poisoned) {
    throw new AppError(
      400,
      'Validation error',
      `The body is valid JSON but contains a ${poisoned} key, which is refused for safety (prototype poisoning). A Kentik query has no such key: remove it.`,
      ['body'],
    );
  }
  return value;
}

const mayHidePoison = (text: string): boolean =>
  text.includes('__proto__') || text.includes('constructor') || text.includes('\\u');

/** Bodies longer than this are parsed every time (a Kentik query is a few KB). */
const MEMO_MAX_CHARS = 64 * 1024;
/** Characters from each end of a body that, with its length, key the memo (see memoKey). */
const KEY_END_CHARS = 96;

/**
 * The memo's key for a body: its length and both ends. A Map keyed by the whole text hashes all of
 * it on every lookup, which a profile of repeat POSTs showed costing as much as the rest of the
 * parse. Bodies that share a key (same length and ends, different middles) are told apart by
 * comparing the whole text; they only take each other's place in the memo.
 */
function memoKey(text: string): string {
  return text.length <= 2 * KEY_END_CHARS
    ? text
    : `${text.length}:${text.slice(0, KEY_END_CHARS)}${text.slice(-KEY_END_CHARS)}`;
}

/**
 * Parses POST bodies, remembering the most recent ones: dashboards send the same query body again
 * and again (every refresh, on every screen), and parsing it and hashing its query (RFC 8785
 * canonical form, then sha256) were most of a repeat POST's CPU. Every body it returns is deeply
 * frozen, so the one parsed value can be handed to every request that sent the same text, and the
 * hash of its query kept with it: nothing can change it afterwards.
 * Bounded: at most `maxEntries` bodies and `maxChars` characters of them, least recently used
 * first out. Errors are never remembered: a bad body is parsed (and refused) each time.
 */
export class BodyParser {
  /** By memoKey(text). */
  readonly #bodies = new Map<string, { text: string; value: unknown }>();
  /** Every value parse() returned (null), with its canonical query once the route knows it. */
  readonly #hashes = new WeakMap<object, CanonicalQuery | null>();
  readonly #maxEntries: number;
  readonly #maxChars: number;
  #chars = 0;

  constructor({ maxEntries = 1000, maxChars = 4 * 1024 * 1024 } = {}) {
    this.#maxEntries = maxEntries;
    this.#maxChars = maxChars;
  }

  /** parseJsonBody(text), deeply frozen; the same value for the same text while remembered. */
  parse(text: string): unknown {
    const key = memoKey(text);
    const known = this.#bodies.get(key);
    if (known !== undefined && known.text === text) {
      // Map keeps insertion order: re-inserting marks it most recently used.
      this.#bodies.delete(key);
      this.#bodies.set(key, known);
      return known.value;
    }
    const value = deepFreeze(parseJsonBody(text));
    if (typeof value === 'object' && value !== null) this.#hashes.set(value, null);
    if (text.length <= MEMO_MAX_CHARS) {
      if (known !== undefined) {
        this.#bodies.delete(key);
        this.#chars -= known.text.length;
      }
      this.#bodies.set(key, { text, value });
      this.#chars += text.length;
      for (const [old, memo] of this.#bodies) {
        if (this.#bodies.size <= this.#maxEntries && this.#chars <= this.#maxChars) break;
        this.#bodies.delete(old);
        this.#chars -= memo.text.length;
      }
    }
    return value;
  }

  /** The canonical query (text and hash) rememberQuery() kept for this body, if any. */
  knownQuery(body: object): CanonicalQuery | undefined {
    return this.#hashes.get(body) ?? undefined;
  }

  /** Keeps the canonical query of a body parse() returned (frozen: it cannot change); others are ignored. */
  rememberQuery(body: object, query: CanonicalQuery): void {
    if (this.#hashes.has(body)) this.#hashes.set(body, query);
  }

  /** How many bodies are remembered (tests). */
  get size(): number {
    return this.#bodies.size;
  }
}

/** Freezes `value` and everything in it; iterative, as a hostile body may nest deeply. */
function deepFreeze<T>(value: T): T {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null || Object.isFrozen(v)) continue;
    Object.freeze(v);
    for (const child of Object.values(v)) if (typeof child === 'object') stack.push(child);
  }
  return value;
}
