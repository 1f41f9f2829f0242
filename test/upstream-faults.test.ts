/**
 * Item 3 of the reliability issue, beyond the scripted single faults of upstream.test.ts: the
 * simulator's fault *rates* and rate limit, how long every waiting GET may take, how many upstream
 * attempts one fetch may cost, the Retry-After gap measured between attempts, and that no fault
 * ends in an unhandled rejection or a dead process.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from '../src/domain/hash.ts';
import type { FaultConfig } from 'kentik-simulator';
import { startSimulator, type Simulator } from 'kentik-simulator';
import {
  kentikQuery,
  metric,
  removeDir,
  requestImage,
  startService,
  type Service,
} from './support/index.ts';

const RETRIES = 2;
/** Long enough for the in-process simulator to render a chart on a busy machine. */
const TIMEOUT_S = 2;
/** ENTRY_WAIT_TIMEOUT of the main service: longer than any fetch below takes (3 hung attempts). */
const WAIT_S = 8;
/** What a GET may take beyond ENTRY_WAIT_TIMEOUT: HTTP, a disk write, a busy 2-core machine. */
const SLACK_MS = 1000;
const WAITERS = 25;

let sim: Simulator;
let svc: Service;
let n = 0;
const fresh = (): Record<string, unknown> => kentikQuery(`faults-${n++}`);
const calls = (q: unknown): number => sim.stats().byHash[queryHash(q)]?.calls ?? 0;

interface Answer {
  status: number;
  ms: number;
  json: any;
  retryAfter: string | null;
}

/** `count` clients GET the id at once; each answer with how long it took. */
async function waiters(url: string, id: string, count: number): Promise<Answer[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const t0 = performance.now();
      const res = await fetch(`${url}/image/${id}`);
      const body = Buffer.from(await res.arrayBuffer());
      const json = (res.headers.get('content-type') ?? '').includes('json')
        ? JSON.parse(body.toString('utf8'))
        : undefined;
      return {
        status: res.status,
        ms: performance.now() - t0,
        json,
        retryAfter: res.headers.get('retry-after'),
      };
    }),
  );
}

/** The service logged no unhandled rejection or error, and is still alive and answering. */
async function expectHealthy(s: Service): Promise<void> {
  const bad = s
    .logs()
    .filter((l) => /unhandled|unexpected fetch failure/.test(l.msg) || l.level >= 60);
  expect(bad.map((l) => `${l.msg}: ${JSON.stringify(l.err ?? '')}`)).toEqual([]);
  expect(
    s.output.filter(
      (l) => /Warning|UnhandledPromiseRejection|Error: /.test(l) && !l.startsWith('{'),
    ),
  ).toEqual([]);
  expect(s.proc.exitCode).toBeNull();
  expect(s.proc.signalCode).toBeNull();
  expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
}

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  svc = await startService({
    KENTIK_API_URL: sim.url,
    KENTIK_API_RETRIES: String(RETRIES),
    KENTIK_API_TIMEOUT: String(TIMEOUT_S),
    KENTIK_API_BACKOFF: '0.02',
    ENTRY_WAIT_TIMEOUT: String(WAIT_S),
    REUSE_WINDOW: '0',
  });
});
afterAll(async () => {
  expect(await svc.stop()).toBe(0);
  await sim.close();
  removeDir(svc.cachePath);
});
beforeEach(() => sim.reset());
afterEach(async () => expectHealthy(svc));

describe('fault rates: every waiting GET answers within ENTRY_WAIT_TIMEOUT, with a bounded number of attempts', () => {
  const cases: Array<
    [string, Partial<FaultConfig>, { status: number; type: string; msg: string; attempts: number }]
  > = [
    [
      '429 always (Retry-After: 0)',
      { errorRates: { 429: 1 }, retryAfter: '0' },
      { status: 429, type: 'Kentik API error', msg: 'Too Many Requests', attempts: 1 + RETRIES },
    ],
    [
      '500 always',
      { errorRates: { 500: 1 } },
      { status: 500, type: 'Kentik API error', msg: 'Internal Server Error', attempts: 1 },
    ],
    [
      '502 always',
      { errorRates: { 502: 1 } },
      { status: 502, type: 'Kentik API error', msg: '502 Bad Gateway', attempts: 1 + RETRIES },
    ],
    [
      '503 always',
      { errorRates: { 503: 1 } },
      { status: 503, type: 'Kentik API error', msg: 'Service Unavailable', attempts: 1 + RETRIES },
    ],
    [
      '504 always',
      { errorRates: { 504: 1 } },
      { status: 504, type: 'Kentik API error', msg: '504 Gateway Time-out', attempts: 1 + RETRIES },
    ],
    [
      'hangs longer than KENTIK_API_TIMEOUT',
      { hangRate: 1 },
      {
        status: 504,
        type: 'Kentik API unavailable',
        msg: `no answer within ${TIMEOUT_S} s`,
        attempts: 1 + RETRIES,
      },
    ],
    [
      'connection resets',
      { resetRate: 1 },
      { status: 504, type: 'Kentik API unavailable', msg: 'did not answer', attempts: 1 + RETRIES },
    ],
    [
      'malformed JSON',
      { malformedJsonRate: 1 },
      { status: 502, type: 'Kentik API bad response', msg: 'not valid JSON', attempts: 1 },
    ],
    [
      'malformed dataUri',
      { malformedDataUriRate: 1 },
      { status: 502, type: 'Kentik API bad response', msg: 'dataUri', attempts: 1 },
    ],
  ];

  it.each(cases)('%s', async (_name, faults, expected) => {
    sim.setFaults(faults);
    const attemptsBefore = await metric(svc.url, 'kic_upstream_attempts_total');
    const q = fresh();
    const id = await requestImage(svc.url, q);
    const answers = await waiters(svc.url, id, WAITERS);
    for (const a of answers) {
      expect(a.ms).toBeLessThanOrEqual(WAIT_S * 1000 + SLACK_MS);
      expect(a.status).toBe(expected.status);
      expect(a.json).toMatchObject({
        type: expected.type,
        loc: ['upstream'],
        msg: expect.stringContaining(expected.msg),
      });
    }
    expect(calls(q)).toBe(expected.attempts);
    expect(expected.attempts).toBeLessThanOrEqual(1 + RETRIES);
    expect((await metric(svc.url, 'kic_upstream_attempts_total')) - attemptsBefore).toBe(
      expected.attempts,
    );
    // The error stays with the id: asking again costs no upstream call.
    expect((await waiters(svc.url, id, 1))[0]!.status).toBe(expected.status);
    expect(calls(q)).toBe(expected.attempts);
  });

  it('honours Retry-After: the gap between attempts is at least what Kentik asked for', async () => {
    sim.setFaults({ errorRates: { 429: 1 }, retryAfter: '1' });
    const q = fresh();
    const id = await requestImage(svc.url, q);
    const t0 = Date.now();
    const answers = await waiters(svc.url, id, WAITERS);
    expect(answers.every((a) => a.status === 429 && a.ms <= WAIT_S * 1000 + SLACK_MS)).toBe(true);
    expect(calls(q)).toBe(1 + RETRIES);
    // Each failed attempt is logged when its answer arrived; the next one starts after the gap.
    const failed = svc.logs().filter((l) => l.msg === 'kentik call failed' && l.id === id);
    expect(failed.map((l) => l.attempt)).toEqual([1, 2, 3]);
    const times = failed.map((l) => l.time as number);
    for (let i = 1; i < times.length; i++) {
      expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(1000);
      expect(times[i]! - times[i - 1]!).toBeLessThan(1000 + SLACK_MS); // not the 20 ms backoff, not much more
    }
    expect(failed.slice(0, 2).map((l) => l.retryInMs)).toEqual([1000, 1000]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
  });

  it('does not wait for a Retry-After beyond its limit: fails at once and says when to retry', async () => {
    sim.setFaults({ errorRates: { 429: 1 }, retryAfter: '3600' });
    const q = fresh();
    const [a] = await waiters(svc.url, await requestImage(svc.url, q), 1);
    expect(a!.status).toBe(429);
    // Well before ENTRY_WAIT_TIMEOUT (WAIT_S), where a service that honoured the hour-long
    // Retry-After would answer 504: the margin is for a loaded machine, not for a wait.
    expect(a!.ms).toBeLessThan((WAIT_S * 1000) / 2);
    expect(a!.json.msg).toContain('retry after 3600 s');
    expect(calls(q)).toBe(1);
  });

  it('a rate limit: calls beyond it get 429 and Retry-After is honoured; the rest are served', async () => {
    const LIMIT = 3;
    sim.setFaults({ rateLimitPerMinute: LIMIT, retryAfter: '1' });
    const queries = Array.from({ length: LIMIT + 2 }, fresh);
    const ids = await Promise.all(queries.map((q) => requestImage(svc.url, q)));
    const t0 = Date.now();
    const answers = (await Promise.all(ids.map((id) => waiters(svc.url, id, 5)))).map((list) => {
      expect(new Set(list.map((a) => a.status)).size).toBe(1); // every waiter of an id sees the same outcome
      for (const a of list) expect(a.ms).toBeLessThanOrEqual(WAIT_S * 1000 + SLACK_MS);
      return list[0]!;
    });
    const served = answers.filter((a) => a.status === 200);
    const limited = answers.filter((a) => a.status === 429);
    expect(served, JSON.stringify({ answers, sim: sim.stats().byStatus })).toHaveLength(LIMIT);
    expect(limited).toHaveLength(2);
    for (const a of limited)
      expect(a.json).toMatchObject({
        type: 'Kentik API error',
        msg: expect.stringContaining('rate limit'),
      });
    // Rejected calls do not count against the window: LIMIT that passed, then 1 + RETRIES per limited query.
    expect(sim.stats().total).toBe(LIMIT + 2 * (1 + RETRIES));
    expect(Math.max(...queries.map(calls))).toBeLessThanOrEqual(1 + RETRIES);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * 1000); // two Retry-After gaps
  });

  it(
    'random mixed faults over many queries: bounded waits, bounded attempts, a definite answer for every id',
    { timeout: 90_000 },
    async () => {
      sim.setFaults({
        seed: 20261127,
        errorRates: { 429: 0.08, 500: 0.04, 502: 0.08, 503: 0.08, 504: 0.04 },
        retryAfter: '0',
        hangRate: 0.05,
        resetRate: 0.08,
        malformedJsonRate: 0.04,
        malformedDataUriRate: 0.04,
        latencyMs: 20,
        jitterMs: 80,
      });
      const queries = Array.from({ length: 40 }, fresh);
      const ids = await Promise.all(queries.map((q) => requestImage(svc.url, q)));
      const finals = await Promise.all(
        ids.map(async (id) => {
          for (;;) {
            const list = await waiters(svc.url, id, 3);
            for (const a of list) expect(a.ms).toBeLessThanOrEqual(WAIT_S * 1000 + SLACK_MS);
            const final = list.find((a) => a.json?.type !== 'Image pending');
            if (final) return final;
            // Still queued behind other fetches after ENTRY_WAIT_TIMEOUT: 504 with Retry-After; ask again.
            for (const a of list)
              expect(a).toMatchObject({ status: 504, retryAfter: expect.stringMatching(/^\d+$/) });
          }
        }),
      );
      const statuses = new Set(finals.map((a) => a.status));
      for (const s of statuses) expect([200, 429, 500, 502, 503, 504]).toContain(s);
      expect(statuses.has(200)).toBe(true);
      expect([...statuses].some((s) => s !== 200)).toBe(true);
      for (const q of queries) expect(calls(q)).toBeLessThanOrEqual(1 + RETRIES);
      for (const [i, a] of finals.entries()) {
        if (a.status === 200) continue;
        expect(a.json.type).toMatch(/^Kentik API (error|unavailable|bad response)$/);
        // A final error is kept for the id; no new upstream call when asked again.
        const before = calls(queries[i]);
        expect((await waiters(svc.url, ids[i]!, 1))[0]!.status).toBe(a.status);
        expect(calls(queries[i])).toBe(before);
      }
    },
  );
});

describe('a fetch that outlasts ENTRY_WAIT_TIMEOUT', () => {
  let slow: Service;
  const WAIT = 1;
  beforeAll(async () => {
    // Three hung attempts of 1 s each: the fetch takes over 3 s, the waiters give up after 1 s.
    slow = await startService({
      KENTIK_API_URL: sim.url,
      KENTIK_API_RETRIES: '2',
      KENTIK_API_TIMEOUT: '1',
      KENTIK_API_BACKOFF: '0.02',
      ENTRY_WAIT_TIMEOUT: String(WAIT),
    });
  });
  afterAll(async () => {
    await expectHealthy(slow);
    expect(await slow.stop()).toBe(0);
    removeDir(slow.cachePath);
  });

  it('every waiter answers 504 "Image pending" with Retry-After at ENTRY_WAIT_TIMEOUT, and the id then gets its final answer', async () => {
    sim.setFaults({ hangRate: 1 });
    const q = fresh();
    const id = await requestImage(slow.url, q);
    const answers = await waiters(slow.url, id, WAITERS);
    for (const a of answers) {
      expect(a.status).toBe(504);
      expect(a.json.type).toBe('Image pending');
      expect(a.retryAfter).toMatch(/^\d+$/);
      expect(a.ms).toBeGreaterThanOrEqual(WAIT * 1000 - 50);
      expect(a.ms).toBeLessThanOrEqual(WAIT * 1000 + SLACK_MS);
    }
    let final = (await waiters(slow.url, id, 1))[0]!;
    while (final.json?.type === 'Image pending') final = (await waiters(slow.url, id, 1))[0]!;
    expect(final.status).toBe(504);
    expect(final.json.type).toBe('Kentik API unavailable');
    expect(calls(q)).toBe(3);
    expect(await metric(slow.url, 'kic_waiters')).toBe(0);
  });
});
