import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryHash } from '../src/domain/hash.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
import {
  expectNoSecret,
  getImage,
  getJson,
  kentikQuery,
  postJson,
  requestImage,
  startService,
  type Service,
} from './support/index.ts';

let sim: Simulator;
let svc: Service;
const calls = (q: unknown): number => sim.stats().byHash[queryHash(q)]?.calls ?? 0;

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  svc = await startService({
    KENTIK_API_URL: sim.url,
    KENTIK_API_RETRIES: '0',
    REUSE_WINDOW: '60',
  });
});
afterAll(async () => {
  await svc.stop();
  expectNoSecret(svc.output);
  await sim.close();
});
beforeEach(() => sim.reset());

describe('request sharing', () => {
  it('200 concurrent identical POSTs make exactly one upstream call and store the bytes once', async () => {
    sim.setFaults({ latencyMs: 300 });
    const q = kentikQuery('fan-in');
    const infoBefore = await getJson(`${svc.url}/info?limit=0`);
    const ids = await Promise.all(
      Array.from({ length: 200 }, (_, i) => requestImage(svc.url, q, 300 + (i % 7))),
    );
    const images = await Promise.all(ids.map((id) => getImage(svc.url, id)));
    expect(images.every((r) => r.status === 200)).toBe(true);
    expect(new Set(images.map((r) => r.headers.get('etag'))).size).toBe(1);
    expect(calls(q)).toBe(1);
    const infoAfter = await getJson(`${svc.url}/info?limit=0`);
    expect(infoAfter.stored_bytes - infoBefore.stored_bytes).toBe(images[0]!.bytes.length);
  });

  it('rule 1: a live entry that lives long enough is returned as is', async () => {
    const q = kentikQuery('rule-1');
    const long = await requestImage(svc.url, q, 600);
    const short = await requestImage(svc.url, q, 60);
    expect(short).toBe(long);
    await getImage(svc.url, long);
    expect(await requestImage(svc.url, q, 500)).toBe(long);
    expect(calls(q)).toBe(1);
  });

  it('rule 1 ignores key order and number spelling', async () => {
    const q = {
      imageType: 'png',
      queries: [
        {
          bucket: 'Left +Y Axis',
          query: {
            topx: 8,
            metric: ['bytes'],
            dimension: ['Traffic'],
            lookback_seconds: 3600,
            viz_type: 'line',
          },
        },
      ],
    };
    const reordered = JSON.parse(
      '{"queries":[{"query":{"viz_type":"line","lookback_seconds":3600.0,"dimension":["Traffic"],"metric":["bytes"],"topx":8.0},"bucket":"Left +Y Axis"}],"imageType":"png"}',
    );
    const a = await requestImage(svc.url, q, 600);
    const b = await requestImage(svc.url, reordered, 300);
    expect(b).toBe(a);
  });

  it('rule 2: a longer ttl gets a new id that shares the fetch in flight', async () => {
    sim.setFaults({ latencyMs: 300 });
    const q = kentikQuery('rule-2-flight');
    const first = await requestImage(svc.url, q, 60);
    const second = await requestImage(svc.url, q, 600);
    expect(second).not.toBe(first);
    expect(second.split('_')[0]).toBe(first.split('_')[0]);
    const [a, b] = await Promise.all([getImage(svc.url, first), getImage(svc.url, second)]);
    expect(a.status).toBe(200);
    expect(b.bytes.equals(a.bytes)).toBe(true);
    expect(calls(q)).toBe(1);
  });

  it('rule 2: an image fetched within REUSE_WINDOW is reused for a new id', async () => {
    const q = kentikQuery('rule-2-window');
    const first = await requestImage(svc.url, q, 60);
    const a = await getImage(svc.url, first);
    const second = await requestImage(svc.url, q, 600);
    expect(second).not.toBe(first);
    const info = await getJson(`${svc.url}/info?limit=100000`);
    expect(info.active_entries.find((e: { id: string }) => e.id === second)?.type).toBe('image'); // no pending phase
    expect((await getImage(svc.url, second)).bytes.equals(a.bytes)).toBe(true);
    expect(calls(q)).toBe(1);
  });

  it('errors are never shared: a new request after a failure fetches again', async () => {
    const q = kentikQuery('error-not-shared');
    sim.script([{ kind: 'status', status: 500, message: 'boom' }]);
    const failed = await requestImage(svc.url, q, 60);
    const r1 = await getImage(svc.url, failed);
    expect(r1.status).toBe(500);
    expect(r1.json.type).toBe('Kentik API error');
    const again = await requestImage(svc.url, q, 30); // shorter ttl: rule 1 must still skip the error
    expect(again).not.toBe(failed);
    expect((await getImage(svc.url, again)).status).toBe(200);
    // The failed id keeps its error until it expires.
    expect((await getImage(svc.url, failed)).status).toBe(500);
    expect(calls(q)).toBe(2);
  });
});

describe('REUSE_WINDOW=0', () => {
  let svc0: Service;
  beforeAll(async () => {
    svc0 = await startService({
      KENTIK_API_URL: sim.url,
      KENTIK_API_RETRIES: '0',
      REUSE_WINDOW: '0',
    });
  });
  afterAll(async () => {
    await svc0.stop();
  });

  it('turns off reuse of finished fetches but keeps in-flight sharing', async () => {
    sim.setFaults({ latencyMs: 300 });
    const q = kentikQuery('window-0');
    const [a, b] = [await requestImage(svc0.url, q, 60), await requestImage(svc0.url, q, 120)];
    await Promise.all([getImage(svc0.url, a), getImage(svc0.url, b)]);
    expect(calls(q)).toBe(1); // shared while in flight
    const c = await requestImage(svc0.url, q, 600);
    expect((await getImage(svc0.url, c)).status).toBe(200);
    expect(calls(q)).toBe(2); // fetched again once done
    const r = await postJson(`${svc0.url}/requests`, { api_query: q, ttl: 30 });
    expect(r.json.id).toBe(c); // rule 1 still applies
  });
});
