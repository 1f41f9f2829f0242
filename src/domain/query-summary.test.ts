import { describe, expect, it } from 'vitest';
import { decodeEntry, encodeEntry } from './entry-codec.ts';
import type { Entry } from './entry.ts';
import { duration, isQuerySummary, summarizeQuery, summaryLine } from './query-summary.ts';

const query = (q: Record<string, unknown>, top: Record<string, unknown> = {}) => ({
  queries: [{ bucket: 'Left +Y Axis', isOverlay: false, query: q }],
  imageType: 'png',
  ...top,
});

describe('summarizeQuery', () => {
  it('says what the chart shows: title, metric, dimensions, lookback, devices, type', () => {
    const s = summarizeQuery(
      query({
        query_title: 'Top source ASNs',
        metric: ['bytes'],
        dimension: ['AS_src', 'Port_dst'],
        lookback_seconds: 86400,
        all_devices: true,
        viz_type: 'stackedArea',
      }),
    );
    expect(s).toEqual({
      title: 'Top source ASNs',
      metrics: ['bytes'],
      dimensions: ['AS_src', 'Port_dst'],
      time: 'last 24 h',
      devices: 'all devices',
      imageType: 'png',
      viz: 'stackedArea',
    });
    expect(summaryLine(s)).toBe(
      'Top source ASNs · bytes by AS_src, Port_dst · last 24 h · all devices · PNG',
    );
  });

  it('uses a fixed time range and named devices when given', () => {
    const s = summarizeQuery(
      query(
        {
          metric: 'packets',
          dimension: ['Traffic'],
          starting_time: '2025-01-15 00:00:00',
          ending_time: '2025-01-16 00:00:00',
          all_devices: false,
          device_name: ['edge-1', 'edge-2', 'core-1', 'core-2'],
        },
        { imageType: 'jpg' },
      ),
    );
    expect(s.time).toBe('2025-01-15 00:00:00 → 2025-01-16 00:00:00');
    expect(s.devices).toBe('edge-1, edge-2, core-1 +1 more');
    expect(s.metrics).toEqual(['packets']);
    expect(s.imageType).toBe('jpeg');
    expect(s.title).toBeUndefined();
  });

  it('skips overlays and copes with anything at all', () => {
    expect(
      summarizeQuery({
        queries: [
          { isOverlay: true, query: { metric: ['packets'] } },
          { isOverlay: false, query: { metric: ['bytes'] } },
        ],
      }).metrics,
    ).toEqual(['bytes']);
    for (const junk of [null, 42, 'x', [], {}, { queries: 'no' }, { queries: [null] }]) {
      const s = summarizeQuery(junk);
      expect(isQuerySummary(s)).toBe(true);
      expect(s.time).toBe('default time range');
    }
  });

  it('caps what a hostile query can put into every /info answer', () => {
    const s = summarizeQuery(
      query({
        query_title: 'x'.repeat(100_000),
        metric: Array.from({ length: 1000 }, (_, i) => `m${i}`),
      }),
    );
    expect(s.title!.length).toBe(120);
    expect(s.metrics).toHaveLength(6);
  });

  it.each([
    [60, '1 min'],
    [90, '90 s'],
    [3600, '1 h'],
    [86400, '24 h'],
    [604800, '7 d'],
  ])('duration(%i) is %s', (s, text) => expect(duration(s)).toBe(text));
});

describe('stored summaries', () => {
  const base = {
    id: `${'a'.repeat(64)}_2000000000.000`,
    hash: 'a'.repeat(64),
    expiresAt: 2_000_000_000_000,
    createdAt: 1_999_999_000_000,
  };
  it('survive the codec with the entry', () => {
    const entry: Entry = {
      ...base,
      kind: 'error',
      status: 400,
      errorType: 'Kentik API error',
      message: 'bad',
      summary: summarizeQuery(query({ metric: ['bytes'], lookback_seconds: 3600 })),
    };
    expect(decodeEntry(encodeEntry(entry))).toEqual(entry);
  });
  it('are dropped, not trusted, when malformed; the entry still loads', () => {
    const text = JSON.stringify({
      v: 1,
      ...base,
      kind: 'pending',
      query: {},
      summary: { metrics: 'no' },
    });
    const decoded = decodeEntry(text);
    expect(decoded.kind).toBe('pending');
    expect(decoded.summary).toBeUndefined();
  });
});
