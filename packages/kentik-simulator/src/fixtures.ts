/**
 * A small valid topXchart body for tests and examples: top 8 source ASNs by bits/s over the
 * last hour, as Kentik's UI would send it (trimmed to the fields that matter).
 */
import type { KentikQuery, KentikRequest } from './validate.ts';

export function sampleRequest(
  query: Partial<KentikQuery> = {},
  top: Partial<Omit<KentikRequest, 'queries'>> = {},
): KentikRequest {
  return {
    queries: [
      {
        bucket: 'Left +Y Axis',
        isOverlay: false,
        query: {
          metric: ['bytes'],
          dimension: ['AS_src'],
          topx: 8,
          depth: 75,
          fastData: 'Auto',
          outsort: 'avg_bits_per_sec',
          lookback_seconds: 3600,
          starting_time: null,
          ending_time: null,
          all_devices: true,
          viz_type: 'stackedArea',
          aggregateTypes: ['avg_bits_per_sec', 'p95th_bits_per_sec', 'max_bits_per_sec'],
          aggregates: [
            {
              value: 'avg_bits_per_sec',
              column: 'f_sum_both_bytes',
              fn: 'average',
              unit: 'bytes',
              raw: true,
            },
            {
              value: 'p95th_bits_per_sec',
              column: 'f_sum_both_bytes',
              fn: 'percentile',
              rank: 95,
              unit: 'bytes',
            },
            { value: 'max_bits_per_sec', column: 'f_sum_both_bytes', fn: 'max', unit: 'bytes' },
          ],
          query_title: '',
          ...query,
        },
      },
    ],
    imageType: 'png',
    version: 4,
    ...top,
  };
}
