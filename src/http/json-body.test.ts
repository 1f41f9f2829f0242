import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AppError } from '../errors.ts';
import { BodyParser, parseJsonBody } from './json-body.ts';

const refusal = (text: string): string | undefined => {
  try {
    parseJsonBody(text);
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return (err as AppError).message;
  }
};

describe('parseJsonBody', () => {
  it('refuses __proto__ and constructor.prototype keys, written plainly or behind \\u escapes', () => {
    for (const text of [
      '{"__proto__": {"x": 1}}',
      '{"api_query": {"a": [{"__proto__": null}]}}',
      '{"\\u005f_proto__": {}}',
      '{"__pro\\u0074o__": 1}',
      '{"constructor": {"prototype": {}}}',
      '{"\\u0063onstructor": {"prototype": 1}}',
    ])
      expect(refusal(text), text).toMatch(/prototype poisoning/);
  });

  it('accepts the words where they are not such keys', () => {
    expect(parseJsonBody('{"title": "__proto__ constructor"}')).toEqual({
      title: '__proto__ constructor',
    });
    expect(parseJsonBody('{"constructor": 1, "t": "\\u00e9"}')).toEqual({ constructor: 1, t: 'é' });
  });

  it('parses what JSON.parse parses, with or without the checking reviver', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = JSON.stringify(value);
        // fc's JSON values may carry __proto__ keys: those are refused, anything else parsed alike.
        if (refusal(text) === undefined) expect(parseJsonBody(text)).toEqual(JSON.parse(text));
      }),
    );
  });

  it('keeps its messages for empty and broken bodies', () => {
    expect(refusal('')).toMatch(/The body is empty/);
    expect(refusal('{"api_query": {')).toMatch(/not valid JSON/);
  });
});

describe('BodyParser', () => {
  const body = (n: number) => JSON.stringify({ api_query: { n, nested: { list: [1, 2] } } });

  it('hands out one deeply frozen value per body text', () => {
    const p = new BodyParser();
    const a = p.parse(body(1)) as any;
    // A different string with the same text (as each request's body is).
    const b = p.parse(body(1).slice(0)) as any;
    expect(b).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a.api_query.nested.list)).toBe(true);
    expect(() => {
      a.api_query.nested.list.push(3);
    }).toThrow(TypeError);
    expect(p.parse(body(2))).not.toBe(a);
  });

  it('keeps a canonical query only for values it handed out', () => {
    const p = new BodyParser();
    const a = p.parse(body(1)) as object;
    expect(p.knownQuery(a)).toBeUndefined();
    p.rememberQuery(a, { hash: 'h1', json: '{"a":1}' });
    expect(p.knownQuery(p.parse(body(1)) as object)).toEqual({ hash: 'h1', json: '{"a":1}' });
    const foreign = { api_query: {} };
    p.rememberQuery(foreign, { hash: 'h2', json: '{}' });
    expect(p.knownQuery(foreign)).toBeUndefined();
  });

  it('remembers no refused body', () => {
    const p = new BodyParser();
    for (let i = 0; i < 2; i++) expect(() => p.parse('{"__proto__": 1}')).toThrow(/poisoning/);
    expect(() => p.parse('{')).toThrow(/not valid JSON/);
    expect(p.size).toBe(0);
  });

  it('is bounded by entries and characters, least recently used out first', () => {
    const p = new BodyParser({ maxEntries: 3, maxChars: 1_000_000 });
    const first = p.parse(body(1));
    p.parse(body(2));
    p.parse(body(3));
    p.parse(body(1)); // used again: now the most recent
    p.parse(body(4)); // evicts 2
    expect(p.size).toBe(3);
    expect(p.parse(body(1))).toBe(first);
    const small = new BodyParser({ maxEntries: 100, maxChars: body(1).length * 2 });
    for (let n = 1; n <= 5; n++) small.parse(body(n));
    expect(small.size).toBe(2);
  });

  it('tells long bodies with the same length and ends apart by their whole text', () => {
    const pad = 'x'.repeat(300);
    // Same length, same first and last 300 characters: only the middle differs.
    const long = (middle: string) => JSON.stringify({ a: pad, m: middle, z: pad });
    const p = new BodyParser({ maxEntries: 10, maxChars: 1_000_000 });
    const one = p.parse(long('one')) as { m: string };
    const two = p.parse(long('two')) as { m: string };
    expect(one.m).toBe('one');
    expect(two.m).toBe('two');
    // They take each other's place: never each other's value, and the memo still counts right.
    expect((p.parse(long('one')) as { m: string }).m).toBe('one');
    expect(p.parse(long('one').slice(0))).toBe(p.parse(long('one')));
    expect(p.size).toBe(1);
    const bounded = new BodyParser({ maxEntries: 100, maxChars: long('one').length * 2 });
    // Lengths differ, so three keys: the characters they hold are counted, not their keys.
    for (const m of ['a', 'bb', 'ccc']) bounded.parse(long(m));
    expect(bounded.size).toBe(2);
  });
});
