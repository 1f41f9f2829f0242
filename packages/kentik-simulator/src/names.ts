/**
 * Plausible series names per Kentik dimension: "AS15169 GOOGLE", "443 (https)", "TCP (6)",
 * "edge-router-1 · xe-0/0/1", country names, IP addresses... Lists are ordered roughly by how
 * often the value tops real traffic charts, and picked with a popularity-weighted shuffle.
 */
import type { Constraints, NetworkSide } from './filters.ts';
import { type Rng, between, popularityOrder } from './prng.ts';

const ASNS = [
  'AS15169 GOOGLE',
  'AS2906 AS-SSI (Netflix)',
  'AS16509 AMAZON-02',
  'AS20940 AKAMAI-ASN1',
  'AS8075 MICROSOFT-CORP-MSN-AS-BLOCK',
  'AS32934 FACEBOOK',
  'AS13335 CLOUDFLARENET',
  'AS714 APPLE-ENGINEERING',
  'AS54113 FASTLY',
  'AS36040 YOUTUBE',
  'AS46489 TWITCH',
  'AS22822 LLNW',
  'AS3356 LEVEL3',
  'AS1299 TWELVE99',
  'AS174 COGENT-174',
  'AS6939 HURRICANE',
  'AS2914 NTT-LTD-2914',
  'AS3257 GTT-BACKBONE',
  'AS7922 COMCAST-7922',
  'AS7018 ATT-INTERNET4',
  'AS701 UUNET',
  'AS3320 DTAG',
  'AS6453 TATA COMMUNICATIONS',
  'AS396982 GOOGLE-CLOUD-PLATFORM',
  'AS14618 AMAZON-AES',
  'AS19679 DROPBOX',
  'AS16276 OVH',
  'AS24940 HETZNER-AS',
  'AS14061 DIGITALOCEAN-ASN',
  'AS63949 AKAMAI-LINODE-AP',
  'AS20473 AS-CHOOPA',
  'AS9002 RETN-AS',
  'AS5511 OPENTRANSIT',
  'AS6762 SEABONE-NET',
  'AS6830 LIBERTY-GLOBAL',
  'AS12322 PROXAD',
  'AS3215 FRANCE-TELECOM',
  'AS2856 BT-UK-AS',
  'AS4134 CHINANET-BACKBONE',
  'AS9498 BHARTI-AIRTEL',
];

const COUNTRIES = [
  'United States',
  'Germany',
  'United Kingdom',
  'Netherlands',
  'France',
  'Japan',
  'Brazil',
  'India',
  'Canada',
  'Singapore',
  'Ireland',
  'Sweden',
  'Australia',
  'Spain',
  'Italy',
  'Poland',
  'South Korea',
  'Mexico',
  'Switzerland',
  'Hong Kong',
  'South Africa',
  'Finland',
  'Norway',
  'Denmark',
  'Belgium',
  'Austria',
  'Czechia',
  'Argentina',
  'Chile',
  'Indonesia',
  'Viet Nam',
  'Turkey',
  'Israel',
  'United Arab Emirates',
  'Nigeria',
  "Côte d'Ivoire",
  'New Zealand',
  'Portugal',
  'Romania',
  'Ukraine',
];

const REGIONS = [
  'California, US',
  'Virginia, US',
  'Hesse, DE',
  'North Holland, NL',
  'Île-de-France, FR',
  'England, GB',
  'Tokyo, JP',
  'São Paulo, BR',
  'Texas, US',
  'Oregon, US',
  'Ontario, CA',
  'Maharashtra, IN',
  'Leinster, IE',
  'New South Wales, AU',
  'Stockholm County, SE',
  'Illinois, US',
  'Bavaria, DE',
  'Madrid, ES',
  'Lombardy, IT',
  'Masovia, PL',
];

const CITIES = [
  'Ashburn, US',
  'Frankfurt am Main, DE',
  'Amsterdam, NL',
  'London, GB',
  'Paris, FR',
  'Tokyo, JP',
  'San Jose, US',
  'Singapore, SG',
  'São Paulo, BR',
  'Chicago, US',
  'Dallas, US',
  'Los Angeles, US',
  'Seattle, US',
  'Toronto, CA',
  'Mumbai, IN',
  'Dublin, IE',
  'Sydney, AU',
  'Stockholm, SE',
  'Madrid, ES',
  'Milan, IT',
  'Warsaw, PL',
  'Zürich, CH',
  'Hong Kong, HK',
  'Johannesburg, ZA',
];

const SITES = [
  'fra1',
  'ams2',
  'lon1',
  'par3',
  'nyc1',
  'iad2',
  'sjc1',
  'sin1',
  'tyo2',
  'gru1',
  'syd1',
];

const PORTS = [
  '443 (https)',
  '80 (http)',
  '53 (domain)',
  '1935 (rtmp)',
  '3478 (stun)',
  '8080 (http-alt)',
  '993 (imaps)',
  '22 (ssh)',
  '123 (ntp)',
  '4500 (ipsec-nat-t)',
  '51820 (wireguard)',
  '853 (domain-s)',
  '587 (submission)',
  '25 (smtp)',
  '5060 (sip)',
  '179 (bgp)',
  '8443 (pcsync-https)',
  '3389 (ms-wbt-server)',
  '1194 (openvpn)',
  '5222 (xmpp-client)',
  '6881 (bittorrent)',
  '27015 (steam)',
  '9000 (cslistener)',
  '161 (snmp)',
];

const PROTOCOLS = [
  'TCP (6)',
  'UDP (17)',
  'ICMP (1)',
  'GRE (47)',
  'ESP (50)',
  'IPv6-ICMP (58)',
  'IP-in-IP (4)',
  'AH (51)',
  'SCTP (132)',
  'IGMP (2)',
  'OSPF (89)',
  'PIM (103)',
];

const TCP_FLAGS = ['ACK', 'PSH ACK', 'SYN ACK', 'SYN', 'FIN ACK', 'RST ACK', 'RST', 'FIN PSH ACK'];
const TOS = [
  '0 (CS0 best effort)',
  '46 (EF)',
  '34 (AF41)',
  '26 (AF31)',
  '10 (AF11)',
  '18 (AF21)',
  '8 (CS1)',
  '48 (CS6)',
  '32 (CS4)',
  '24 (CS3)',
];
const CUSTOM = [
  'Acme Corp',
  'Globex',
  'Initech',
  'Umbrella',
  'Hooli',
  'Stark Industries',
  'Wayne Enterprises',
  'Tyrell',
  'Cyberdyne',
  'Soylent',
  'Wonka',
  'Aperture',
];

/** Public prefixes that dominate traffic (CDNs, clouds): "outside" addresses. */
const OUTSIDE_V4: Array<[number, number]> = [
  [142, 250],
  [104, 16],
  [151, 101],
  [23, 215],
  [52, 84],
  [157, 240],
  [17, 253],
  [185, 199],
  [13, 107],
  [45, 60],
];
/** Customer and private ranges: "inside" addresses. */
const INSIDE_V4: Array<[number, number]> = [
  [198, 51],
  [203, 0],
  [10, 20],
  [172, 16],
  [192, 168],
];
const OUTSIDE_V6 = ['2606:4700:', '2a03:2880:', '2001:4860:', '2620:1ec:'];
const INSIDE_V6 = ['2001:db8:10:', '2001:db8:20:', 'fd00:1:'];

/** Share of flows over IPv6 when no family is asked for. */
const V6_SHARE = 0.12;

export type Family = 4 | 6;

function pickFamily(rng: Rng, c: Constraints): Family {
  return c.family ?? (rng() < V6_SHARE ? 6 : 4);
}

/** One address of `family` on `side` (either side when undefined). */
function address(rng: Rng, family: Family, side: NetworkSide | undefined): string {
  if (family === 6) {
    const prefixes =
      side === 'inside'
        ? INSIDE_V6
        : side === 'outside'
          ? OUTSIDE_V6
          : [...OUTSIDE_V6, ...INSIDE_V6];
    const p = prefixes[Math.floor(Math.pow(rng(), 1.6) * prefixes.length)] ?? '2001:db8:';
    const a = Math.floor(rng() * 0xffff).toString(16);
    const b = Math.floor(rng() * 0xffff).toString(16);
    return `${p}:${a}:${b}`;
  }
  const prefixes =
    side === 'inside' ? INSIDE_V4 : side === 'outside' ? OUTSIDE_V4 : [...OUTSIDE_V4, ...INSIDE_V4];
  const p = prefixes[Math.floor(Math.pow(rng(), 1.6) * prefixes.length)] ?? [10, 0];
  return `${p[0]}.${p[1]}.${Math.floor(rng() * 256)}.${1 + Math.floor(rng() * 254)}`;
}

/** `n` distinct addresses; of one family when given, else mostly IPv4 with some IPv6. */
function ipPool(
  rng: Rng,
  n: number,
  c: Constraints,
  side: NetworkSide | undefined,
  family?: Family,
): string[] {
  const out = new Set<string>();
  for (let i = 0; out.size < n && i < n * 10; i++)
    out.add(address(rng, family ?? pickFamily(rng, c), side));
  return [...out];
}

/** The network devices of the simulated account (Kentik's i_device_name values). */
const DEVICES = [
  'edge-router-1',
  'edge-router-2',
  'border-fra1',
  'core-ams2',
  'pe-lon1',
  'cr1-nyc1',
  'edge-par3',
  'core-iad2',
  'edge-sjc1',
  'border-sin1',
  'edge-tyo2',
  'core-gru1',
  'edge-syd1',
];

function devicePool(c: Constraints): string[] {
  return c.devices ?? DEVICES;
}

function interfacePool(rng: Rng, c: Constraints): string[] {
  const routers = c.devices ?? DEVICES.slice(0, 6);
  const out: string[] = [];
  for (const r of routers) {
    const names = /^(edge|cr|core)/.test(r)
      ? ['xe-0/0/0', 'xe-0/0/1', 'xe-0/1/3', 'et-0/0/12', 'ae0.100']
      : ['HundredGigE0/0/0/3', 'HundredGigE0/0/0/7', 'TenGigE0/1/0/2', 'Bundle-Ether10'];
    for (const n of names) out.push(`${r} · ${n}`);
  }
  // Interleave so that top series spread over several routers.
  return popularityOrder(rng, out, 0.2);
}

function macPool(rng: Rng, n: number): string[] {
  const ouis = ['00:1c:73', '3c:fd:fe', '00:05:73', 'f8:c0:01', '28:8a:1c', '00:1b:21'];
  return Array.from({ length: n }, (_, i) => {
    const tail = [0, 0, 0].map(() =>
      Math.floor(rng() * 256)
        .toString(16)
        .padStart(2, '0'),
    );
    return `${ouis[i % ouis.length] ?? '00:00:00'}:${tail.join(':')}`;
  });
}

/** Ports by the transport protocols they are seen with. */
const PORT_PROTOCOLS: Record<string, 'tcp' | 'udp' | 'both'> = {
  '443': 'both', // HTTPS and QUIC
  '53': 'both',
  '5060': 'both',
  '6881': 'both',
  '3478': 'udp',
  '123': 'udp',
  '4500': 'udp',
  '51820': 'udp',
  '1194': 'udp',
  '27015': 'udp',
  '161': 'udp',
};
const TCP = 6;
const UDP = 17;

function portProtocols(port: string): number[] {
  const p = PORT_PROTOCOLS[port.split(' ')[0] ?? ''] ?? 'tcp';
  return p === 'both' ? [TCP, UDP] : p === 'udp' ? [UDP] : [TCP];
}

/** Port names seen with the constrained protocol; a protocol without ports has port 0. */
function portPool(c: Constraints): string[] {
  if (c.protocol === undefined) return PORTS;
  if (c.protocol !== TCP && c.protocol !== UDP) return ['0'];
  return PORTS.filter((p) => portProtocols(p).includes(c.protocol as number));
}

function protoPortPool(c: Constraints): string[] {
  const out: string[] = [];
  for (const p of PORTS) {
    const n = p.split(' ')[0] ?? '0';
    for (const proto of portProtocols(p)) {
      if (c.protocol !== undefined && proto !== c.protocol) continue;
      out.push(`${proto === TCP ? 'TCP' : 'UDP'}/${n}`);
    }
  }
  return out.length > 0 ? out : ['0'];
}

function protocolPool(c: Constraints): string[] {
  if (c.protocol === undefined) return PROTOCOLS;
  return [PROTOCOLS.find((p) => p.endsWith(`(${c.protocol})`)) ?? `Protocol (${c.protocol})`];
}

function asnPool(asn: number | undefined): string[] {
  if (asn === undefined) return ASNS;
  return [ASNS.find((a) => a.startsWith(`AS${asn} `)) ?? `AS${asn}`];
}

/** Flows "src:port → dst:port": both ends of one family, ends on the constrained sides. */
function flowPool(rng: Rng, n: number, c: Constraints): string[] {
  const ports = portPool(c).map((p) => p.split(' ')[0] ?? '0');
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const family = pickFamily(rng, c);
    const src = address(rng, family, c.origination);
    const dst = address(rng, family, c.termination);
    const ephemeral = ports[0] === '0' ? '0' : String(Math.floor(between(rng, 32768, 61000)));
    const port = ports[i % ports.length] ?? '443';
    out.push(
      family === 6
        ? `[${src}]:${ephemeral} → [${dst}]:${port}`
        : `${src}:${ephemeral} → ${dst}:${port}`,
    );
  }
  return out;
}

/** Address dimensions: one family per flow, so a pair of them must agree. */
function addressSide(d: string, c: Constraints): NetworkSide | undefined | null {
  if (d === 'IP_src') return c.origination;
  if (d === 'IP_dst') return c.termination;
  if (d.endsWith('_nexthop_ip')) return 'inside';
  return null;
}

/** Candidate values for one dimension, most popular first. */
function pool(dimension: string, rng: Rng, c: Constraints, family?: Family): string[] {
  const d = dimension;
  if (d === 'Traffic') return ['Total'];
  if (d === 'AS_src') return asnPool(c.srcAs);
  if (d === 'AS_dst') return asnPool(c.dstAs);
  if (d.startsWith('AS_') || d.endsWith('_asn') || d === 'ASTopTalkers') return ASNS;
  if (d.startsWith('Geography_')) return COUNTRIES;
  if (d.endsWith('_geo_region') || d === 'RegionTopTalkers') return REGIONS;
  if (d.endsWith('_geo_city')) return CITIES;
  if (d.startsWith('InterfaceID_') || d === 'InterfaceTopTalkers') return interfacePool(rng, c);
  if (d.startsWith('Port_') || d === 'PortPortTalkers') return portPool(c);
  if (d.endsWith('_proto_port')) return protoPortPool(c);
  if (d === 'Proto') return protocolPool(c);
  const side = addressSide(d, c);
  if (side !== null) return ipPool(rng, 40, c, side, family);
  if (d === 'TopFlow' || d === 'TopFlowsIP') return flowPool(rng, 30, c);
  if (d.endsWith('_eth_mac')) return macPool(rng, 24);
  if (d.startsWith('VLAN_'))
    return [100, 200, 10, 300, 42, 1001, 20, 500, 4000, 30].map((v) => `VLAN ${v}`);
  if (d === 'i_device_id') return devicePool(c);
  if (d === 'i_device_site_name') return SITES.map((s) => s.toUpperCase());
  if (d === 'i_trf_origination') return c.origination ? [c.origination] : ['outside', 'inside'];
  if (d === 'i_trf_termination') return c.termination ? [c.termination] : ['inside', 'outside'];
  if (d.endsWith('_route_prefix_len'))
    return [24, 22, 20, 23, 21, 16, 19, 18, 48, 32, 17, 44].map((v) => `/${v}`);
  if (d.endsWith('_route_length')) return [2, 3, 1, 4, 5, 6, 7].map((v) => `AS path length ${v}`);
  if (d.endsWith('_bgp_community')) {
    return [
      '3356:2001',
      '1299:30000',
      '174:21100',
      '6939:1000',
      '65000:100',
      '2914:420',
      '3257:8052',
      '65535:666',
    ];
  }
  if (d.endsWith('_bgp_aspath')) {
    return [
      '3356 15169',
      '1299 2906',
      '174 16509',
      '6939 13335',
      '2914 20940',
      '3356 8075',
      '1299 32934',
      '3257 54113',
    ];
  }
  if (d === 'inet_family') return c.family ? [`IPv${c.family}`] : ['IPv4', 'IPv6'];
  if (d === 'TOS') return TOS;
  if (d === 'tcp_flags') return TCP_FLAGS;
  return CUSTOM;
}

/**
 * `count` distinct series names for the given dimensions (joined with " / " for several),
 * fewer when the dimensions have fewer combinations (Traffic has one, Proto twelve...), within
 * what the query's constraints allow. Address dimensions of one series share an address family.
 */
export function seriesNames(
  dimensions: readonly string[],
  count: number,
  rng: Rng,
  c: Constraints = {},
): string[] {
  if (dimensions.length === 1)
    return popularityOrder(rng, pool(dimensions[0] ?? '', rng, c)).slice(0, count);
  const addressDims = dimensions.map((d) => addressSide(d, c) !== null);
  const byFamily = (family: Family | undefined) =>
    dimensions.map((d, i) =>
      addressDims[i] || family === undefined ? popularityOrder(rng, pool(d, rng, c, family)) : [],
    );
  const mixed = byFamily(undefined);
  const v4 = addressDims.some(Boolean) ? byFamily(4) : mixed;
  const v6 = addressDims.some(Boolean) ? byFamily(6) : mixed;
  const combos = mixed.reduce((n, p) => n * Math.max(1, p.length), 1);
  const target = Math.min(count, combos);
  const out: string[] = [];
  const seen = new Set<string>();
  for (let attempt = 0; out.length < target && attempt < target * 50; attempt++) {
    const family = pickFamily(rng, c);
    const pools = (family === 6 ? v6 : v4).map((p, i) => (addressDims[i] ? p : (mixed[i] ?? [])));
    // Rank r of the output mostly pairs top values of each dimension, with some spread.
    const parts = pools.map(
      (p) => p[Math.min(p.length - 1, Math.floor(Math.pow(rng(), 1.8) * p.length))] ?? '',
    );
    // A flow does not go from an address to itself.
    const addrs = parts.filter((_, i) => addressDims[i]);
    if (new Set(addrs).size < addrs.length) continue;
    const name = parts.join(' / ');
    if (!seen.has(name)) {
      seen.add(name);
      out.push(name);
    }
  }
  return out;
}
