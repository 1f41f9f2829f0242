import { describe, expect, it } from 'vitest';
import { sampleRequest } from './fixtures.ts';
import { DIMENSIONS, METRICS, parseKentikTime, validateRequest } from './validate.ts';

function error(body: unknown): { message: string; field: string } {
  const r = validateRequest(body);
  if (r.ok) throw new Error('expected a validation error');
  return r;
}

describe('validateRequest', () => {
  it('accepts a Kentik-style request and returns the same object', () => {
    const body = sampleRequest();
    const r = validateRequest(body);
    expect(r.ok && r.value).toBe(body);
  });

  it('accepts metric as a string or an array, every documented metric and dimension', () => {
    for (const metric of METRICS) {
      expect(validateRequest(sampleRequest({ metric })).ok, metric).toBe(true);
      expect(validateRequest(sampleRequest({ metric: [metric] })).ok, metric).toBe(true);
    }
    for (const d of DIMENSIONS)
      expect(validateRequest(sampleRequest({ dimension: [d] })).ok, d).toBe(true);
    expect(validateRequest(sampleRequest({ dimension: ['c_customer', 'AS_src'] })).ok).toBe(true);
  });

  it('rejects unknown metrics naming the field and the valid values', () => {
    const e = error(sampleRequest({ metric: ['bytes', 'buckets'] }));
    expect(e.field).toBe('queries[0].query.metric');
    expect(e.message).toContain(
      "Invalid metric 'buckets' in queries[0].query.metric; expected one of bytes",
    );
    expect(e.message.length).toBeLessThan(300);
    expect(error(sampleRequest({ metric: [] })).field).toBe('queries[0].query.metric');
    expect(error(sampleRequest({ metric: 5 as never })).field).toBe('queries[0].query.metric');
  });

  it('checks the request shape', () => {
    expect(error(null).field).toBe('body');
    expect(error([]).field).toBe('body');
    expect(error({}).field).toBe('queries');
    expect(error({ queries: [] }).field).toBe('queries');
    expect(error({ queries: [1] }).field).toBe('queries[0]');
    expect(error({ queries: [{ query: {} }] }).field).toBe('queries[0].bucket');
    expect(error({ queries: [{ bucket: 'Left +Y Axis', query: 'x' }] }).field).toBe(
      'queries[0].query',
    );
    const overlay = sampleRequest();
    (overlay.queries[0] as { isOverlay: unknown }).isOverlay = 'no';
    expect(error(overlay).field).toBe('queries[0].isOverlay');
    expect(error(sampleRequest({}, { imageType: 'gif' })).field).toBe('imageType');
    expect(error(sampleRequest({}, { imageType: 'PNG' })).field).toBe('imageType');
    expect(error(sampleRequest({}, { version: '4' as never })).field).toBe('version');
  });

  it('checks dimension, topx, depth, viz_type, fastData', () => {
    expect(error(sampleRequest({ dimension: [] })).field).toBe('queries[0].query.dimension');
    expect(error(sampleRequest({ dimension: 'AS_src' as never })).field).toBe(
      'queries[0].query.dimension',
    );
    expect(error(sampleRequest({ dimension: ['as_src'] })).message).toContain("'as_src'");
    for (const topx of [0, 41, 2.5, '8']) {
      expect(error(sampleRequest({ topx: topx as number })).field, String(topx)).toBe(
        'queries[0].query.topx',
      );
    }
    expect(validateRequest(sampleRequest({ topx: 40 })).ok).toBe(true);
    expect(error(sampleRequest({ depth: 10 })).field).toBe('queries[0].query.depth');
    expect(error(sampleRequest({ viz_type: 'radar' })).message).toContain('stackedArea');
    expect(error(sampleRequest({ fastData: 'Slow' })).field).toBe('queries[0].query.fastData');
  });

  it('checks the time range', () => {
    const times = (starting_time: string | null, ending_time: string | null) =>
      sampleRequest({ lookback_seconds: 0, starting_time, ending_time });
    expect(validateRequest(times('2025-01-01 00:00:00', '2025-01-01 06:00:00')).ok).toBe(true);
    expect(validateRequest(times('2025-01-01T00:00:00Z', '2025-01-01T06:00:00+02:00')).ok).toBe(
      true,
    );
    expect(error(times(null, null)).field).toBe('queries[0].query.lookback_seconds');
    expect(error(times('yesterday', '2025-01-01 06:00:00')).field).toBe(
      'queries[0].query.starting_time',
    );
    expect(error(times('2025-01-01 06:00:00', '2025-01-01 06:00:00')).message).toContain('before');
    expect(error(times('2024-01-01 00:00:00', '2024-06-01 00:00:00')).message).toContain('60 days');
    expect(error(sampleRequest({ lookback_seconds: -5 })).field).toBe(
      'queries[0].query.lookback_seconds',
    );
    expect(error(sampleRequest({ lookback_seconds: 61 * 86400 })).field).toBe(
      'queries[0].query.lookback_seconds',
    );
    // A non-zero lookback wins over (even broken) explicit times, as in Kentik.
    expect(validateRequest(sampleRequest({ lookback_seconds: 600, starting_time: 'x' })).ok).toBe(
      true,
    );
  });

  it('checks filters and aggregates', () => {
    const filters = (f: unknown) =>
      sampleRequest({ filters: { connector: 'All', filterGroups: [f] } as never });
    expect(
      validateRequest(
        filters({
          connector: 'All',
          not: false,
          filters: [{ filterField: 'dst_as', operator: '=', filterValue: '15169' }],
        }),
      ).ok,
    ).toBe(true);
    expect(error(filters({ filters: [{ operator: '=', filterValue: 1 }] })).field).toBe(
      'queries[0].query.filters.filterGroups[0].filters[0].filterField',
    );
    expect(error(sampleRequest({ filters: [] as never })).field).toBe('queries[0].query.filters');
    expect(
      error(sampleRequest({ aggregates: [{ value: 'avg_bits_per_sec', raw: false }] })).message,
    ).toContain('raw');
    expect(validateRequest(sampleRequest({ aggregates: [] })).ok).toBe(true);
  });
});

describe('parseKentikTime', () => {
  it('reads Kentik and ISO formats as UTC unless a zone is given', () => {
    expect(parseKentikTime('2025-01-15 10:30:00')).toBe(Date.parse('2025-01-15T10:30:00Z'));
    expect(parseKentikTime('2025-01-15 10:30')).toBe(Date.parse('2025-01-15T10:30:00Z'));
    expect(parseKentikTime('2025-01-15T10:30:00.250Z')).toBe(
      Date.parse('2025-01-15T10:30:00.250Z'),
    );
    expect(parseKentikTime('2025-01-15T10:30:00+01:00')).toBe(Date.parse('2025-01-15T09:30:00Z'));
    expect(parseKentikTime('2025-02-30 00:00:00')).toBeNull();
    expect(parseKentikTime('2025-01-15')).toBeNull();
    expect(parseKentikTime('15/01/2025 10:30')).toBeNull();
  });
});
