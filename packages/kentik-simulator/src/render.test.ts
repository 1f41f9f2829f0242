import { loadImage } from '@napi-rs/canvas';
import { describe, expect, it } from 'vitest';
import { sampleRequest } from './fixtures.ts';
import { CHART_HEIGHT, CHART_WIDTH, chartConfig, renderChart, renderSvg } from './render.ts';
import { MAX_DRAWN_SERIES, timeWindow } from './series.ts';
import { formatValue, metricInfo } from './units.ts';
import { VIZ_TYPES } from './validate.ts';

const NOW = new Date('2025-03-12T15:37:20Z');

function labels(body: ReturnType<typeof sampleRequest>): string[] {
  const config = chartConfig(body, NOW);
  const ds = config.data.datasets;
  // Time series: one dataset per series; rankings: one dataset, names in data.labels.
  return ds.length > 1 || config.data.labels === undefined
    ? ds.map((d) => String(d.label))
    : (config.data.labels as string[]);
}

describe('renderChart formats', () => {
  it('png: decodable, 1000x500, realistic size', async () => {
    const { mime, bytes } = await renderChart(sampleRequest(), NOW);
    expect(mime).toBe('image/png');
    expect(bytes.subarray(0, 8).equals(Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'))).toBe(true);
    expect(bytes.length).toBeGreaterThan(20_000);
    expect(bytes.length).toBeLessThan(400_000);
    const img = await loadImage(bytes);
    expect([img.width, img.height]).toEqual([CHART_WIDTH, CHART_HEIGHT]);
  });

  it('jpeg (jpg and jpeg): decodable JFIF', async () => {
    for (const imageType of ['jpg', 'jpeg']) {
      const { mime, bytes } = await renderChart(sampleRequest({}, { imageType }), NOW);
      expect(mime).toBe('image/jpeg');
      expect([...bytes.subarray(0, 3)]).toEqual([0xff, 0xd8, 0xff]);
      expect([...bytes.subarray(-2)]).toEqual([0xff, 0xd9]);
      expect((await loadImage(bytes)).width).toBe(CHART_WIDTH);
    }
  });

  it('svg: text drawn as paths, no <text> elements, no scripts', async () => {
    const { mime, bytes } = await renderChart(sampleRequest({}, { imageType: 'svg' }), NOW);
    expect(mime).toBe('image/svg+xml');
    const svg = bytes.toString('utf8');
    expect(svg).toMatch(/<svg[^>]*width="1000"[^>]*height="500"/);
    expect(svg).not.toContain('<text');
    expect(svg).not.toMatch(/<script|javascript:|on\w+=/i);
    // Chart shapes plus one path per text run (title, legend, ticks): many paths.
    expect((svg.match(/<path/g) ?? []).length).toBeGreaterThan(50);
  });

  it('pdf: a one-page PDF with the font embedded', async () => {
    const { mime, bytes } = await renderChart(sampleRequest({}, { imageType: 'pdf' }), NOW);
    expect(mime).toBe('application/pdf');
    const text = bytes.toString('latin1');
    expect(text.startsWith('%PDF-')).toBe(true);
    expect(text.trimEnd().endsWith('%%EOF')).toBe(true);
    expect(text).toMatch(/\/Type\s*\/Page\b/);
    expect(text).toMatch(/FontFile2|FontFile3|\/Font/);
    expect(bytes.length).toBeGreaterThan(5_000);
  });

  it('every viz_type renders', async () => {
    for (const viz_type of VIZ_TYPES) {
      const { bytes } = await renderChart(sampleRequest({ viz_type }), NOW);
      expect(bytes.length, viz_type).toBeGreaterThan(10_000);
    }
  });

  it('rejects an invalid body', async () => {
    await expect(renderChart(sampleRequest({ metric: 'buckets' }), NOW)).rejects.toThrow(/metric/);
  });
});

describe('renderSvg', () => {
  it('draws any chart.js configuration at its size, text kept as text, the same bytes twice', () => {
    const config = {
      type: 'bar' as const,
      data: { labels: ['hot GET'], datasets: [{ label: 'ratio', data: [0.9] }] },
      options: {
        animation: false as const,
        plugins: { title: { display: true, text: 'Bench title' } },
      },
    };
    const svg = renderSvg(config, 640, 200).toString('utf8');
    expect(svg).toMatch(/<svg[^>]* width="640" height="200"/);
    expect(svg).toContain('font-family="DejaVu Sans"');
    expect(svg).not.toContain('<script');
    expect(renderSvg(config, 640, 200).toString('utf8')).toBe(svg);
  });
});

describe('determinism', () => {
  it('same body and minute give identical bytes in every format', async () => {
    for (const imageType of ['png', 'jpeg', 'svg', 'pdf']) {
      const body = sampleRequest({}, { imageType });
      const a = await renderChart(body, NOW);
      const b = await renderChart(structuredClone(body), new Date(NOW.getTime() + 25_000));
      expect(a.bytes.equals(b.bytes), imageType).toBe(true);
    }
  });

  it('a lookback chart changes in the next minute; a fixed window does not', async () => {
    const next = new Date(NOW.getTime() + 60_000);
    const lookback = sampleRequest();
    expect(
      (await renderChart(lookback, NOW)).bytes.equals((await renderChart(lookback, next)).bytes),
    ).toBe(false);
    const fixed = sampleRequest({
      lookback_seconds: 0,
      starting_time: '2025-01-01 00:00',
      ending_time: '2025-01-01 06:00',
    });
    expect(
      (await renderChart(fixed, NOW)).bytes.equals((await renderChart(fixed, next)).bytes),
    ).toBe(true);
  });

  it('different queries give different charts', async () => {
    const a = await renderChart(sampleRequest({ dimension: ['AS_src'] }), NOW);
    const b = await renderChart(sampleRequest({ dimension: ['AS_dst'] }), NOW);
    expect(a.bytes.equals(b.bytes)).toBe(false);
  });
});

describe('chart content', () => {
  it('names series after the dimension', () => {
    expect(labels(sampleRequest({ dimension: ['AS_src'] }))[0]).toMatch(/^AS\d+ [A-Z0-9-]+/);
    expect(labels(sampleRequest({ dimension: ['IP_dst'] }))[0]).toMatch(
      /^(\d+\.\d+\.\d+\.\d+|[0-9a-f:]+) /,
    );
    expect(labels(sampleRequest({ dimension: ['Port_dst'] })).join('|')).toMatch(/\d+ \([a-z-]+\)/);
    expect(labels(sampleRequest({ dimension: ['Proto'] })).join('|')).toContain('TCP (6)');
    expect(labels(sampleRequest({ dimension: ['InterfaceID_src'] }))[0]).toMatch(
      /^[a-z0-9-]+ · \S+/,
    );
    expect(labels(sampleRequest({ dimension: ['Traffic'] }))).toHaveLength(1);
    expect(labels(sampleRequest({ dimension: ['Traffic'] }))[0]).toMatch(/^Total /);
    const pairs = labels(sampleRequest({ dimension: ['IP_src', 'IP_dst'] }));
    expect(pairs.every((l) => l.includes(' / '))).toBe(true);
    expect(new Set(pairs).size).toBe(pairs.length);
  });

  it('draws topx series, at most 12, fewer when the dimension has fewer values', () => {
    expect(labels(sampleRequest({ topx: 3 }))).toHaveLength(3);
    expect(labels(sampleRequest({ topx: 40 }))).toHaveLength(MAX_DRAWN_SERIES);
    expect(labels(sampleRequest({ dimension: ['inet_family'], topx: 8 }))).toHaveLength(2);
    expect(labels(sampleRequest({ viz_type: 'pie', topx: 5 }))).toHaveLength(5);
  });

  it('titles: query_title, else generated from topx, dimension, metric and window', () => {
    const title = (b: ReturnType<typeof sampleRequest>): unknown =>
      chartConfig(b, NOW).options?.plugins?.title?.text;
    expect(title(sampleRequest({ query_title: 'Peering overview' }))).toBe('Peering overview');
    expect(title(sampleRequest())).toBe('Top 8 Source AS Number by bits/s — last 1 h');
    expect(title(sampleRequest({ metric: 'packets', lookback_seconds: 604800, topx: 5 }))).toBe(
      'Top 5 Source AS Number by packets/s — last 7 days',
    );
    expect(
      title(
        sampleRequest({
          lookback_seconds: 0,
          starting_time: '2025-01-01 00:00:00',
          ending_time: '2025-01-02T00:00:00Z',
        }),
      ),
    ).toBe('Top 8 Source AS Number by bits/s — 2025-01-01 00:00 to 2025-01-02 00:00 UTC');
  });

  it('time window: lookback ends at the minute, buckets of 1 min up to 300 points', () => {
    const w = timeWindow({ metric: 'bytes', dimension: ['Traffic'], lookback_seconds: 3600 }, NOW);
    expect(w.endMs).toBe(Date.parse('2025-03-12T15:37:00Z'));
    expect(w.stepMs).toBe(60_000);
    expect(w.times).toHaveLength(60);
    const day = timeWindow(
      { metric: 'bytes', dimension: ['Traffic'], lookback_seconds: 86400 },
      NOW,
    );
    expect(day.stepMs).toBe(300_000);
    expect(day.times.length).toBeLessThanOrEqual(300);
  });

  it('formats values with units', () => {
    expect(formatValue(12.5e9, metricInfo('bytes'))).toBe('12.5 Gbits/s');
    expect(formatValue(340e3, metricInfo('packets'))).toBe('340 kpackets/s');
    expect(formatValue(1.2e6, metricInfo('unique_src_ip'))).toBe('1.2M unique src IPs');
    expect(formatValue(1.5, metricInfo('perc_retransmit'))).toBe('1.5%');
    expect(formatValue(38, metricInfo('client_latency'))).toBe('38 ms');
  });
});
