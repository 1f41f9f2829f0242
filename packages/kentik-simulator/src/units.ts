/**
 * What a metric measures, how it is labelled and how big its numbers plausibly are.
 */

export interface MetricInfo {
  /** Unit written after a scaled number: "bits/s" gives "12.5 Gbits/s". */
  unit: string;
  /** Short name for titles: "bits/s", "packets/s", "unique src IPs". */
  title: string;
  /** Values of different series add up (stacking makes sense). */
  additive: boolean;
  /** Use SI prefixes (k, M, G, T) when scaling. */
  si: boolean;
  /** The prefix joins the unit ("12.5 Gbits/s") rather than the number ("1.2M unique src IPs"). */
  prefixOnUnit: boolean;
  /** Values are whole numbers (counts). */
  integer: boolean;
  /** Typical total (additive) or per-series level (non-additive): [min, max]. */
  magnitude: [number, number];
}

const BITS: MetricInfo = {
  unit: 'bits/s',
  title: 'bits/s',
  additive: true,
  si: true,
  prefixOnUnit: true,
  integer: false,
  magnitude: [4e9, 90e9],
};
const PACKETS: MetricInfo = {
  unit: 'packets/s',
  title: 'packets/s',
  additive: true,
  si: true,
  prefixOnUnit: true,
  integer: false,
  magnitude: [6e5, 12e6],
};

function rate(unit: string, min: number, max: number): MetricInfo {
  return {
    unit,
    title: unit,
    additive: true,
    si: true,
    prefixOnUnit: false,
    integer: false,
    magnitude: [min, max],
  };
}
function count(unit: string, min: number, max: number): MetricInfo {
  return {
    unit,
    title: unit,
    additive: true,
    si: true,
    prefixOnUnit: false,
    integer: true,
    magnitude: [min, max],
  };
}
function level(unit: string, title: string, min: number, max: number): MetricInfo {
  return {
    unit,
    title,
    additive: false,
    si: false,
    prefixOnUnit: false,
    integer: false,
    magnitude: [min, max],
  };
}

const INFO: Record<string, MetricInfo> = {
  bytes: BITS,
  in_bytes: { ...BITS, title: 'inbound bits/s' },
  out_bytes: { ...BITS, title: 'outbound bits/s' },
  packets: PACKETS,
  in_packets: { ...PACKETS, title: 'inbound packets/s' },
  out_packets: { ...PACKETS, title: 'outbound packets/s' },
  tcp_retransmit: rate('retransmits/s', 800, 40_000),
  retransmits_in: rate('retransmits/s', 500, 25_000),
  out_of_order_in: rate('out-of-order pkts/s', 200, 12_000),
  fragments: rate('fragments/s', 50, 6_000),
  fps: rate('flows/s', 40_000, 900_000),
  perc_retransmit: level('%', '% retransmits', 0.2, 3),
  perc_retransmits_in: level('%', '% retransmits in', 0.2, 3),
  perc_out_of_order_in: level('%', '% out-of-order', 0.05, 1.5),
  perc_fragments: level('%', '% fragments', 0.01, 0.8),
  client_latency: level('ms', 'client latency', 4, 90),
  server_latency: level('ms', 'server latency', 1, 40),
  appl_latency: level('ms', 'application latency', 5, 250),
  unique_src_ip: count('unique src IPs', 20_000, 2_500_000),
  unique_dst_ip: count('unique dst IPs', 5_000, 600_000),
  unique_src_as: count('unique src ASNs', 1_500, 40_000),
  unique_dst_as: count('unique dst ASNs', 800, 20_000),
};

export function metricInfo(metric: string): MetricInfo {
  return INFO[metric] ?? BITS;
}

const PREFIXES = ['', 'k', 'M', 'G', 'T', 'P'];

export interface Scale {
  divisor: number;
  prefix: string;
}

/** The SI scale that shows `max` with 1-3 integer digits. */
export function chooseScale(max: number, info: MetricInfo): Scale {
  if (!info.si || !(max > 0)) return { divisor: 1, prefix: '' };
  let i = 0;
  while (i < PREFIXES.length - 1 && max / 1000 ** i >= 1000) i++;
  return { divisor: 1000 ** i, prefix: PREFIXES[i] ?? '' };
}

/** Format a number with at most 3 significant digits, trimming zeros: 12.5, 340, 0.75. */
export function formatNumber(v: number): string {
  if (v === 0) return '0';
  const abs = Math.abs(v);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return Number(v.toFixed(digits)).toString();
}

/** "12.5 Gbits/s", "340 kpackets/s", "450k flows/s", "1.2%", "38 ms"; with `scale` all ticks share a prefix. */
export function formatValue(v: number, info: MetricInfo, scale?: Scale): string {
  if (v === 0) return info.unit === '%' ? '0%' : `0 ${info.unit}`;
  const s = scale ?? chooseScale(Math.abs(v), info);
  const n = formatNumber(v / s.divisor);
  if (info.unit === '%') return `${n}%`;
  return info.prefixOnUnit ? `${n} ${s.prefix}${info.unit}` : `${n}${s.prefix} ${info.unit}`;
}
