/**
 * What a query's filters and device selection say about the traffic, in the terms the chart
 * generator needs: which devices, which direction (origination/termination), which IP protocol,
 * address family and ASNs. Charts honour these, so a filter on TCP shows only TCP.
 *
 * Modelled: filters that must all hold (connector "All", not negated) with operator "=" (or "=="),
 * on the fields below, plus `all_devices: false` with `device_name`. Anything else (other fields,
 * operators, "Any" groups, negated groups) still narrows the traffic volume, as before, and is
 * listed in the subtitle, but does not change which series appear.
 */
import type { KentikFilter, KentikFilterGroup, KentikQuery } from './validate.ts';

export type NetworkSide = 'inside' | 'outside';

export interface Constraints {
  /** Devices the query is restricted to (device_name, or an i_device_name filter). */
  devices?: string[];
  /** i_trf_origination: where the traffic comes from. */
  origination?: NetworkSide;
  /** i_trf_termination: where it goes to. */
  termination?: NetworkSide;
  /** IP protocol number (proto). */
  protocol?: number;
  /** Address family (inet_family 4 or 6). */
  family?: 4 | 6;
  srcAs?: number;
  dstAs?: number;
}

/** Kentik's filter field names for what Constraints models. */
const FIELD = {
  proto: 'protocol',
  protocol: 'protocol',
  i_trf_origination: 'origination',
  i_trf_termination: 'termination',
  inet_family: 'family',
  src_as: 'srcAs',
  dst_as: 'dstAs',
  i_device_name: 'devices',
  device_name: 'devices',
} as const;

/** The filters every matching flow satisfies: conjunctive, non-negated groups, walked down. */
function requiredFilters(groups: readonly KentikFilterGroup[] | undefined, out: KentikFilter[]) {
  for (const g of groups ?? []) {
    if (g.not === true) continue;
    const all = (g.connector ?? 'All').toLowerCase() === 'all';
    if (all) out.push(...(g.filters ?? []));
    else if ((g.filters ?? []).length === 1) out.push(...g.filters);
    if (all) requiredFilters(g.filterGroups, out);
  }
  return out;
}

function side(v: string): NetworkSide | undefined {
  const s = v.trim().toLowerCase();
  return s === 'inside' || s === 'outside' ? s : undefined;
}

function int(v: string): number | undefined {
  return /^\s*\d+\s*$/.test(v) ? Number(v) : undefined;
}

export function constraintsOf(q: KentikQuery): Constraints {
  const c: Constraints = {};
  const top = q.filters;
  const topAll = (top?.connector ?? 'All').toLowerCase() === 'all';
  const groups = top?.filterGroups ?? [];
  const filters = requiredFilters(topAll ? groups : groups.length === 1 ? groups : [], []);
  for (const f of filters) {
    if (f.operator !== '=' && f.operator !== '==') continue;
    const key = FIELD[f.filterField as keyof typeof FIELD];
    const value = String(f.filterValue);
    switch (key) {
      case 'protocol': {
        const n = int(value) ?? PROTOCOL_NUMBERS[value.trim().toUpperCase()];
        if (n !== undefined) c.protocol = n;
        break;
      }
      case 'origination':
      case 'termination': {
        const s = side(value);
        if (s) c[key] = s;
        break;
      }
      case 'family': {
        const n = int(value);
        if (n === 4 || n === 6) c.family = n;
        break;
      }
      case 'srcAs':
      case 'dstAs': {
        const n = int(value.replace(/^AS/i, ''));
        if (n !== undefined) c[key] = n;
        break;
      }
      case 'devices':
        c.devices = splitNames(value);
        break;
    }
  }
  if (q.all_devices === false && q.device_name && q.device_name.length > 0) {
    const names =
      typeof q.device_name === 'string' ? splitNames(q.device_name) : q.device_name.slice();
    if (names.length > 0) c.devices = names;
  }
  return c;
}

function splitNames(s: string): string[] {
  return s
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '');
}

const PROTOCOL_NUMBERS: Record<string, number> = { TCP: 6, UDP: 17, ICMP: 1, GRE: 47, ESP: 50 };

/** Kentik's portal labels for the filter fields and dimensions charts mention. */
export const FILTER_FIELD_LABELS: Record<string, string> = {
  proto: 'Protocol',
  protocol: 'Protocol',
  i_trf_origination: 'Traffic Origination',
  i_trf_termination: 'Traffic Termination',
  inet_family: 'INET Family',
  src_as: 'Source AS Number',
  dst_as: 'Destination AS Number',
  i_device_name: 'Device',
  device_name: 'Device',
  l4_src_port: 'Source Port Number',
  l4_dst_port: 'Destination Port Number',
  inet_src_addr: 'Source IP/CIDR',
  inet_dst_addr: 'Destination IP/CIDR',
  src_geo: 'Source Country',
  dst_geo: 'Destination Country',
  i_device_site_name: 'Site',
  tcp_flags: 'TCP Flags',
};
