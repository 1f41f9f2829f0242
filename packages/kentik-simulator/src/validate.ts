/**
 * Validation of topXchart request bodies, at the level a Kentik user runs into: the fields that
 * decide what is drawn must exist, have the right type and name known values. Everything else
 * (the 50+ UI keys such as `cutFn`, `generatorMode`, `sync_axes`) is accepted untouched.
 *
 * Value lists follow Kentik's documented query format (the v5 Query API docs and the enums of
 * Kentik's official Python SDK, kentik-api): metrics, dimensions, viz types, image types,
 * `topx` 1..40 and `depth` 25..250.
 */

/** Metrics accepted in `query.metric` (a string or an array of strings). */
export const METRICS = [
  'bytes',
  'in_bytes',
  'out_bytes',
  'packets',
  'in_packets',
  'out_packets',
  'tcp_retransmit',
  'perc_retransmit',
  'retransmits_in',
  'perc_retransmits_in',
  'out_of_order_in',
  'perc_out_of_order_in',
  'fragments',
  'perc_fragments',
  'client_latency',
  'server_latency',
  'appl_latency',
  'fps',
  'unique_src_ip',
  'unique_dst_ip',
  'unique_src_as',
  'unique_dst_as',
] as const;

/**
 * Dimensions accepted in `query.dimension`. Custom dimensions (`c_` followed by lower-case
 * letters, digits or `_`) are accepted too, as Kentik does for user-defined dimensions.
 */
export const DIMENSIONS = [
  'Traffic',
  'AS_src',
  'AS_dst',
  'Geography_src',
  'Geography_dst',
  'InterfaceID_src',
  'InterfaceID_dst',
  'Port_src',
  'Port_dst',
  'IP_src',
  'IP_dst',
  'Proto',
  'src_eth_mac',
  'dst_eth_mac',
  'VLAN_src',
  'VLAN_dst',
  'TopFlow',
  'TopFlowsIP',
  'ASTopTalkers',
  'InterfaceTopTalkers',
  'PortPortTalkers',
  'RegionTopTalkers',
  'src_geo_region',
  'src_geo_city',
  'dst_geo_region',
  'dst_geo_city',
  'i_device_id',
  'i_device_site_name',
  'i_trf_origination',
  'i_trf_termination',
  'src_route_prefix_len',
  'src_route_length',
  'src_bgp_community',
  'src_bgp_aspath',
  'src_nexthop_ip',
  'src_nexthop_asn',
  'src_second_asn',
  'src_third_asn',
  'src_proto_port',
  'dst_route_prefix_len',
  'dst_route_length',
  'dst_bgp_community',
  'dst_bgp_aspath',
  'dst_nexthop_ip',
  'dst_nexthop_asn',
  'dst_second_asn',
  'dst_third_asn',
  'dst_proto_port',
  'inet_family',
  'TOS',
  'tcp_flags',
] as const;

/**
 * Chart types accepted in `query.viz_type` (default `stackedArea`). How each one is drawn:
 * stackedArea: stacked areas over time; line: lines over time; stackedBar: stacked bars over
 * time; bar: one bar per series (window average); pie: doughnut of window averages;
 * table, matrix, sankey: a ranked horizontal bar chart of window averages (chart.js has no
 * table or sankey; the ranking carries the same information).
 */
export const VIZ_TYPES = [
  'stackedArea',
  'line',
  'stackedBar',
  'bar',
  'pie',
  'table',
  'matrix',
  'sankey',
] as const;

/** `imageType` values (default `png`); `jpg` and `jpeg` both give image/jpeg. */
export const IMAGE_TYPES = ['png', 'jpg', 'jpeg', 'svg', 'pdf'] as const;

export const FAST_DATA = ['Auto', 'Fast', 'Full'] as const;
export const TOPX_MIN = 1;
export const TOPX_MAX = 40;
export const DEPTH_MIN = 25;
export const DEPTH_MAX = 250;
/** Longest time window accepted (lookback or starting..ending): 60 days. */
export const MAX_WINDOW_SECONDS = 60 * 24 * 3600;
/** At most this many entries in `dimension`. */
export const MAX_DIMENSIONS = 8;

export type Metric = (typeof METRICS)[number];
export type Dimension = (typeof DIMENSIONS)[number];
export type VizType = (typeof VIZ_TYPES)[number];
export type ImageType = (typeof IMAGE_TYPES)[number];

/** One Kentik query. Only the fields the simulator reads are typed; all others pass through. */
export interface KentikQuery {
  metric: string | string[];
  dimension: string[];
  topx?: number;
  depth?: number;
  lookback_seconds?: number | null;
  starting_time?: string | null;
  ending_time?: string | null;
  viz_type?: string | null;
  query_title?: string | null;
  descriptor?: string | null;
  fastData?: string | null;
  filters?: KentikFilters | null;
  aggregates?: unknown[] | null;
  all_devices?: boolean | null;
  device_name?: string | string[] | null;
  [key: string]: unknown;
}

export interface KentikFilter {
  filterField: string;
  operator: string;
  filterValue: string | number;
  [key: string]: unknown;
}

export interface KentikFilterGroup {
  connector?: string;
  not?: boolean;
  filters: KentikFilter[];
  filterGroups?: KentikFilterGroup[];
  [key: string]: unknown;
}

export interface KentikFilters {
  connector?: string;
  filterGroups: KentikFilterGroup[];
  [key: string]: unknown;
}

export interface KentikQueryItem {
  bucket: string;
  isOverlay?: boolean;
  query: KentikQuery;
  [key: string]: unknown;
}

/** A topXchart request body. */
export interface KentikRequest {
  queries: KentikQueryItem[];
  imageType?: string;
  version?: number;
  [key: string]: unknown;
}

export type ValidationResult =
  { ok: true; value: KentikRequest } | { ok: false; message: string; field: string };

class Invalid extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A user value quoted in a message: JSON-encoded and cut to a sane length. */
function quote(v: unknown): string {
  let s: string;
  if (typeof v === 'string') s = `'${v}'`;
  else {
    try {
      s = JSON.stringify(v) ?? String(v);
    } catch {
      s = String(v);
    }
  }
  return s.length > 48 ? `${s.slice(0, 45)}...` : s;
}

/** "one of a, b, c" listing at most `max` values, so messages stay around 200-300 bytes. */
function oneOf(values: readonly string[], max = 24): string {
  if (values.length <= max) return values.join(', ');
  return `${values.slice(0, max).join(', ')} and ${values.length - max} more`;
}

function isKnownDimension(d: string): boolean {
  return (DIMENSIONS as readonly string[]).includes(d) || /^c_[a-z0-9_]{1,60}$/.test(d);
}

/**
 * Parse a Kentik time: "YYYY-MM-DD HH:mm[:ss]" (UTC, Kentik's documented format) or an ISO 8601
 * date-time with optional fraction and zone. Returns epoch milliseconds or null.
 */
export function parseKentikTime(s: string): number | null {
  const m =
    /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$/.exec(
      s.trim(),
    );
  if (!m) return null;
  const [, y, mo, d, h, mi, sec, frac, zone] = m;
  const ms = Date.UTC(
    Number(y),
    Number(mo) - 1,
    Number(d),
    Number(h),
    Number(mi),
    Number(sec ?? 0),
    frac ? Math.floor(Number(frac) * 1000) : 0,
  );
  const check = new Date(ms);
  // Reject dates that Date.UTC silently rolled over (2024-02-31, 25:00).
  if (
    check.getUTCFullYear() !== Number(y) ||
    check.getUTCMonth() !== Number(mo) - 1 ||
    check.getUTCDate() !== Number(d) ||
    check.getUTCHours() !== Number(h) ||
    check.getUTCMinutes() !== Number(mi) ||
    Number(sec ?? 0) > 59
  ) {
    return null;
  }
  if (!zone || zone === 'Z') return ms;
  const zm = /^([+-])(\d{2}):?(\d{2})$/.exec(zone);
  if (!zm) return null;
  const offsetMin = (Number(zm[2]) * 60 + Number(zm[3])) * (zm[1] === '-' ? -1 : 1);
  return ms - offsetMin * 60_000;
}

function checkInteger(v: unknown, field: string, min: number, max: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new Invalid(
      field,
      `Invalid ${field} ${quote(v)}; expected an integer from ${min} to ${max}`,
    );
  }
}

function checkOptionalString(q: Record<string, unknown>, key: string, path: string): void {
  const v = q[key];
  if (v !== undefined && v !== null && typeof v !== 'string') {
    throw new Invalid(`${path}.${key}`, `Invalid ${path}.${key} ${quote(v)}; expected a string`);
  }
}

function checkMetric(q: Record<string, unknown>, path: string): void {
  const field = `${path}.metric`;
  const v = q.metric;
  if (v === undefined || v === null) throw new Invalid(field, `Missing ${field}`);
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0) {
    throw new Invalid(
      field,
      `Invalid ${field} ${quote(v)}; expected a metric name or a non-empty array of them`,
    );
  }
  for (const m of list) {
    if (typeof m !== 'string' || !(METRICS as readonly string[]).includes(m)) {
      throw new Invalid(
        field,
        `Invalid metric ${quote(m)} in ${field}; expected one of ${oneOf(METRICS, 12)}`,
      );
    }
  }
}

function checkDimension(q: Record<string, unknown>, path: string): void {
  const field = `${path}.dimension`;
  const v = q.dimension;
  if (v === undefined || v === null) throw new Invalid(field, `Missing ${field}`);
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_DIMENSIONS) {
    throw new Invalid(
      field,
      `Invalid ${field} ${quote(v)}; expected an array of 1 to ${MAX_DIMENSIONS} dimension names`,
    );
  }
  for (const d of v) {
    if (typeof d !== 'string' || !isKnownDimension(d)) {
      throw new Invalid(
        field,
        `Invalid dimension ${quote(d)} in ${field}; expected one of ${oneOf(DIMENSIONS, 16)} (or a custom c_ dimension)`,
      );
    }
  }
}

function checkTime(q: Record<string, unknown>, path: string): void {
  const lb = q.lookback_seconds;
  if (lb !== undefined && lb !== null && lb !== 0) {
    checkInteger(lb, `${path}.lookback_seconds`, 1, MAX_WINDOW_SECONDS);
    return; // a non-zero lookback overrides starting_time/ending_time, as in Kentik
  }
  const s = q.starting_time;
  const e = q.ending_time;
  if ((s === undefined || s === null || s === '') && (e === undefined || e === null || e === '')) {
    throw new Invalid(
      `${path}.lookback_seconds`,
      `Missing time range in ${path}: set lookback_seconds or starting_time and ending_time`,
    );
  }
  const times: number[] = [];
  for (const [key, v] of [
    ['starting_time', s],
    ['ending_time', e],
  ] as const) {
    const field = `${path}.${key}`;
    const t = typeof v === 'string' ? parseKentikTime(v) : null;
    if (t === null) {
      throw new Invalid(
        field,
        `Invalid ${field} ${quote(v)}; expected "YYYY-MM-DD HH:mm:ss" (UTC) or ISO 8601`,
      );
    }
    times.push(t);
  }
  const [start = 0, end = 0] = times;
  if (start >= end) {
    throw new Invalid(
      `${path}.starting_time`,
      `Invalid time range in ${path}: starting_time must be before ending_time`,
    );
  }
  if (end - start > MAX_WINDOW_SECONDS * 1000) {
    throw new Invalid(
      `${path}.starting_time`,
      `Invalid time range in ${path}: at most ${MAX_WINDOW_SECONDS / 86400} days between starting_time and ending_time`,
    );
  }
}

function checkFilterGroups(groups: unknown, field: string, depth: number): void {
  if (!Array.isArray(groups))
    throw new Invalid(field, `Invalid ${field}; expected an array of filter groups`);
  if (depth > 4) throw new Invalid(field, `Invalid ${field}; filter groups nest too deeply`);
  groups.forEach((g, i) => {
    const gf = `${field}[${i}]`;
    if (!isObject(g)) throw new Invalid(gf, `Invalid ${gf}; expected an object`);
    const filters = g.filters ?? [];
    if (!Array.isArray(filters))
      throw new Invalid(`${gf}.filters`, `Invalid ${gf}.filters; expected an array`);
    filters.forEach((f, j) => {
      const ff = `${gf}.filters[${j}]`;
      if (!isObject(f)) throw new Invalid(ff, `Invalid ${ff}; expected an object`);
      if (typeof f.filterField !== 'string' || f.filterField === '') {
        throw new Invalid(
          `${ff}.filterField`,
          `Invalid ${ff}.filterField ${quote(f.filterField)}; expected a field name`,
        );
      }
      if (typeof f.operator !== 'string' || f.operator === '') {
        throw new Invalid(
          `${ff}.operator`,
          `Invalid ${ff}.operator ${quote(f.operator)}; expected an operator such as =`,
        );
      }
      if (typeof f.filterValue !== 'string' && typeof f.filterValue !== 'number') {
        throw new Invalid(
          `${ff}.filterValue`,
          `Invalid ${ff}.filterValue ${quote(f.filterValue)}; expected a string or number`,
        );
      }
    });
    if (g.filterGroups !== undefined && g.filterGroups !== null) {
      checkFilterGroups(g.filterGroups, `${gf}.filterGroups`, depth + 1);
    }
  });
}

function checkFilters(q: Record<string, unknown>, path: string): void {
  const v = q.filters;
  if (v === undefined || v === null) return;
  const field = `${path}.filters`;
  if (!isObject(v))
    throw new Invalid(field, `Invalid ${field}; expected an object with filterGroups`);
  checkFilterGroups(v.filterGroups ?? [], `${field}.filterGroups`, 0);
}

function checkAggregates(q: Record<string, unknown>, path: string): void {
  const v = q.aggregates;
  if (v === undefined || v === null) return;
  const field = `${path}.aggregates`;
  if (!Array.isArray(v)) throw new Invalid(field, `Invalid ${field}; expected an array`);
  v.forEach((a, i) => {
    if (!isObject(a))
      throw new Invalid(`${field}[${i}]`, `Invalid ${field}[${i}]; expected an object`);
  });
  if (v.length > 0 && !v.some((a) => isObject(a) && a.raw === true)) {
    throw new Invalid(
      field,
      `Invalid ${field}: chart queries need at least one aggregate with "raw": true`,
    );
  }
}

function checkQuery(q: Record<string, unknown>, path: string): void {
  checkMetric(q, path);
  checkDimension(q, path);
  if (q.topx !== undefined && q.topx !== null)
    checkInteger(q.topx, `${path}.topx`, TOPX_MIN, TOPX_MAX);
  if (q.depth !== undefined && q.depth !== null)
    checkInteger(q.depth, `${path}.depth`, DEPTH_MIN, DEPTH_MAX);
  checkTime(q, path);
  const viz = q.viz_type;
  if (
    viz !== undefined &&
    viz !== null &&
    (typeof viz !== 'string' || !(VIZ_TYPES as readonly string[]).includes(viz))
  ) {
    throw new Invalid(
      `${path}.viz_type`,
      `Invalid viz_type ${quote(viz)} in ${path}.viz_type; expected one of ${oneOf(VIZ_TYPES)}`,
    );
  }
  const fd = q.fastData;
  if (
    fd !== undefined &&
    fd !== null &&
    (typeof fd !== 'string' || !(FAST_DATA as readonly string[]).includes(fd))
  ) {
    throw new Invalid(
      `${path}.fastData`,
      `Invalid fastData ${quote(fd)} in ${path}.fastData; expected one of ${oneOf(FAST_DATA)}`,
    );
  }
  for (const key of ['query_title', 'descriptor', 'outsort']) checkOptionalString(q, key, path);
  const ad = q.all_devices;
  if (ad !== undefined && ad !== null && typeof ad !== 'boolean') {
    throw new Invalid(
      `${path}.all_devices`,
      `Invalid ${path}.all_devices ${quote(ad)}; expected true or false`,
    );
  }
  const dn = q.device_name;
  if (
    dn !== undefined &&
    dn !== null &&
    typeof dn !== 'string' &&
    !(Array.isArray(dn) && dn.every((x) => typeof x === 'string'))
  ) {
    throw new Invalid(
      `${path}.device_name`,
      `Invalid ${path}.device_name; expected a string or an array of strings`,
    );
  }
  checkFilters(q, path);
  checkAggregates(q, path);
}

function check(body: unknown): KentikRequest {
  if (!isObject(body))
    throw new Invalid('body', 'Invalid request body: expected a JSON object with "queries"');
  const queries = body.queries;
  if (!Array.isArray(queries) || queries.length === 0) {
    throw new Invalid(
      'queries',
      'Invalid queries: expected a non-empty array of {bucket, query} objects',
    );
  }
  if (queries.length > 16)
    throw new Invalid('queries', 'Invalid queries: at most 16 queries per chart');
  queries.forEach((item, i) => {
    const path = `queries[${i}]`;
    if (!isObject(item))
      throw new Invalid(path, `Invalid ${path}: expected an object with bucket and query`);
    if (typeof item.bucket !== 'string' || item.bucket === '') {
      throw new Invalid(
        `${path}.bucket`,
        `Invalid ${path}.bucket ${quote(item.bucket)}; expected a bucket name such as "Left +Y Axis"`,
      );
    }
    if (
      item.isOverlay !== undefined &&
      item.isOverlay !== null &&
      typeof item.isOverlay !== 'boolean'
    ) {
      throw new Invalid(
        `${path}.isOverlay`,
        `Invalid ${path}.isOverlay ${quote(item.isOverlay)}; expected true or false`,
      );
    }
    if (!isObject(item.query))
      throw new Invalid(`${path}.query`, `Invalid ${path}.query: expected an object`);
    checkQuery(item.query, `${path}.query`);
  });
  const it = body.imageType;
  if (
    it !== undefined &&
    it !== null &&
    (typeof it !== 'string' || !(IMAGE_TYPES as readonly string[]).includes(it))
  ) {
    throw new Invalid(
      'imageType',
      `Invalid imageType ${quote(it)}; expected one of ${oneOf(IMAGE_TYPES)}`,
    );
  }
  if (body.version !== undefined && body.version !== null && typeof body.version !== 'number') {
    throw new Invalid(
      'version',
      `Invalid version ${quote(body.version)}; expected a number such as 4`,
    );
  }
  return body as unknown as KentikRequest;
}

/**
 * Validate a topXchart body. On success `value` is the same object (not a copy), so its hash is
 * unchanged; on failure `message` names the offending field, `field` is its path.
 */
export function validateRequest(body: unknown): ValidationResult {
  try {
    return { ok: true, value: check(body) };
  } catch (e) {
    if (e instanceof Invalid) return { ok: false, message: e.message, field: e.field };
    throw e;
  }
}

/** The query the chart is drawn from: the first non-overlay query (else the first). */
export function primaryQuery(req: KentikRequest): KentikQuery {
  const item = req.queries.find((q) => q.isOverlay !== true) ?? req.queries[0];
  if (!item) throw new TypeError('request has no queries');
  return item.query;
}

/** The metrics of a query as a list (Kentik accepts a string or an array). */
export function metricsOf(q: KentikQuery): string[] {
  return typeof q.metric === 'string' ? [q.metric] : q.metric;
}

/** Normalised image type: 'png' | 'jpeg' | 'svg' | 'pdf'. */
export function imageTypeOf(req: KentikRequest): 'png' | 'jpeg' | 'svg' | 'pdf' {
  const t = req.imageType ?? 'png';
  if (t === 'jpg' || t === 'jpeg') return 'jpeg';
  if (t === 'svg' || t === 'pdf') return t;
  return 'png';
}
