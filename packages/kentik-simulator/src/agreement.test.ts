// Charts agree with their queries: filters are applied, every image type of one query shows the
// same traffic, address pairs share a family, titles use Kentik's dimension labels.
import { describe, expect, it } from 'vitest';
import { sampleRequest } from './fixtures.ts';
import { DIMENSION_LABELS } from './labels.ts';
import { chartConfig, renderChart } from './render.ts';
import { DIMENSIONS, type KentikQuery } from './validate.ts';

const NOW = new Date('2025-03-12T15:37:20Z');
/** Enough different queries (the seed changes with the descriptor) to see a rule break. */
const SEEDS = Array.from({ length: 25 }, (_, i) => `seed ${i}`);

type Body = ReturnType<typeof sampleRequest>;

/** Series names as drawn (time series carry "   avg …" after the name). */
function names(body: Body): string[] {
  const config = chartConfig(body, NOW);
  const ds = config.data.datasets;
  return ds.length > 1 || config.data.labels === undefined
    ? ds.map((d) => String(d.label).split('   avg ')[0] ?? '')
    : (config.data.labels as string[]);
}

function allNames(query: Partial<KentikQuery>): string[] {
  return SEEDS.flatMap((descriptor) => names(sampleRequest({ topx: 40, descriptor, ...query })));
}

function filters(...fs: Array<[string, string]>): KentikQuery['filters'] {
  return {
    connector: 'All',
    filterGroups: [
      {
        connector: 'All',
        not: false,
        filters: fs.map(([filterField, filterValue]) => ({
          filterField,
          operator: '=',
          filterValue,
        })),
      },
    ],
  };
}
const OUTSIDE_TO_INSIDE = filters(
  ['i_trf_origination', 'outside'],
  ['i_trf_termination', 'inside'],
);
const TCP = filters(['proto', '6']);

const INSIDE = /^(10\.|172\.16\.|192\.168\.|198\.51\.|203\.0\.|2001:db8:|fd00:)/;
const isV6 = (a: string): boolean => a.includes(':');

describe('filters are applied', () => {
  it('a device selection shows only those devices, and only their interfaces', () => {
    const devices = ['pe-lon1', 'edge-router-2'];
    const sel = { all_devices: false, device_name: devices };
    const shown = allNames({ dimension: ['i_device_id'], ...sel });
    expect(new Set(shown)).toEqual(new Set(devices));
    for (const n of allNames({ dimension: ['InterfaceID_src'], ...sel }))
      expect(devices).toContain(n.split(' · ')[0]);
    // The same through a filter on the device name, and without any selection: more devices.
    const viaFilter = allNames({
      dimension: ['i_device_id'],
      filters: filters(['i_device_name', 'core-ams2']),
    });
    expect(new Set(viaFilter)).toEqual(new Set(['core-ams2']));
    expect(new Set(allNames({ dimension: ['i_device_id'] })).size).toBeGreaterThan(5);
  });

  it('outside → inside shows only that direction', () => {
    expect(
      new Set(
        allNames({
          dimension: ['i_trf_origination', 'i_trf_termination'],
          filters: OUTSIDE_TO_INSIDE,
        }),
      ),
    ).toEqual(new Set(['outside / inside']));
    const pairs = allNames({ dimension: ['IP_src', 'IP_dst'], filters: OUTSIDE_TO_INSIDE });
    expect(pairs.length).toBeGreaterThan(50);
    for (const p of pairs) {
      const [src = '', dst = ''] = p.split(' / ');
      expect(src, p).not.toMatch(INSIDE);
      expect(dst, p).toMatch(INSIDE);
    }
    for (const dst of allNames({ dimension: ['IP_dst'], filters: OUTSIDE_TO_INSIDE }))
      expect(dst).toMatch(INSIDE);
    // Without the filter both kinds of address show up on both ends.
    const unfiltered = allNames({ dimension: ['IP_dst'] });
    expect(unfiltered.some((a) => INSIDE.test(a))).toBe(true);
    expect(unfiltered.some((a) => !INSIDE.test(a))).toBe(true);
  });

  it('a TCP filter shows only TCP: protocols, ports and protocol:port', () => {
    expect(new Set(allNames({ dimension: ['Proto'], filters: TCP }))).toEqual(new Set(['TCP (6)']));
    const ports = allNames({ dimension: ['Port_dst'], filters: TCP });
    expect(ports).toContain('443 (https)');
    for (const udpOnly of ['123 (ntp)', '3478 (stun)', '51820 (wireguard)', '161 (snmp)'])
      expect(ports).not.toContain(udpOnly);
    for (const pp of allNames({ dimension: ['dst_proto_port'], filters: TCP }))
      expect(pp).toMatch(/^TCP\//);
    // Unfiltered, UDP shows up.
    expect(allNames({ dimension: ['Proto'] })).toContain('UDP (17)');
    expect(allNames({ dimension: ['Port_dst'] })).toContain('123 (ntp)');
  });

  it('an address family filter keeps every address in that family', () => {
    for (const a of allNames({ dimension: ['IP_src'], filters: filters(['inet_family', '6']) }))
      expect(isV6(a), a).toBe(true);
  });
});

describe('IPv4 and IPv6 are not mixed in one flow', () => {
  it('IP pairs share a family, and both families occur', () => {
    const pairs = allNames({ dimension: ['IP_src', 'IP_dst'] });
    const families = new Set<boolean>();
    for (const p of pairs) {
      const [src = '', dst = ''] = p.split(' / ');
      expect(isV6(src), p).toBe(isV6(dst));
      expect(src).not.toBe(dst);
      families.add(isV6(src));
    }
    expect(families).toEqual(new Set([true, false]));
  });

  it('full flows too', () => {
    for (const f of allNames({ dimension: ['TopFlow'] })) {
      const [src = '', dst = ''] = f.split(' → ');
      expect(src.startsWith('['), f).toBe(dst.startsWith('['));
    }
  });
});

describe('one query, the same traffic in every image type', () => {
  it('PNG, JPEG, SVG and PDF draw the same series and values', () => {
    const query = { dimension: ['InterfaceID_src'], all_devices: false, device_name: ['pe-lon1'] };
    const data = (imageType: string) =>
      chartConfig(sampleRequest(query, { imageType }), NOW).data.datasets.map((d) => ({
        label: d.label,
        data: d.data,
      }));
    const png = data('png');
    expect(png.length).toBeGreaterThan(1);
    for (const t of ['jpeg', 'jpg', 'svg', 'pdf']) expect(data(t), t).toEqual(png);
  });

  it('the rendered PDF carries the same legend text as the PNG config', async () => {
    const body = sampleRequest({ topx: 3 }, { imageType: 'pdf' });
    const { bytes } = await renderChart(body, NOW);
    expect(bytes.subarray(0, 5).toString()).toBe('%PDF-');
    const legend = chartConfig(sampleRequest({ topx: 3 }), NOW).data.datasets.map((d) =>
      String(d.label),
    );
    expect(legend).toHaveLength(3);
    // Both legends come from one config function fed the same seed: the labels match exactly.
    expect(chartConfig(body, NOW).data.datasets.map((d) => String(d.label))).toEqual(legend);
  });
});

describe("titles use Kentik's dimension labels", () => {
  it('no API code in any generated title', () => {
    for (const d of DIMENSIONS) {
      if (d === 'Traffic') continue;
      const title = String(
        chartConfig(sampleRequest({ dimension: [d] }), NOW).options?.plugins?.title?.text,
      );
      expect(title).toContain(DIMENSION_LABELS[d]);
      expect(title).not.toMatch(new RegExp(`\\b${d}\\b`)); // "Proto" is inside "Protocol"
    }
    const pair = chartConfig(sampleRequest({ dimension: ['IP_src', 'IP_dst'] }), NOW).options
      ?.plugins?.title?.text;
    expect(pair).toMatch(/^Top \d+ Source IP\/CIDR \/ Destination IP\/CIDR by bits\/s/);
  });

  it('the subtitle names filter fields by their labels', () => {
    const sub = String(
      chartConfig(sampleRequest({ filters: OUTSIDE_TO_INSIDE }), NOW).options?.plugins?.subtitle
        ?.text,
    );
    expect(sub).toContain('Traffic Origination = outside, Traffic Termination = inside');
    expect(sub).not.toContain('i_trf_');
  });
});
