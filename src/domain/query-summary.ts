/**
 * A short, human description of a Kentik topXchart query: what a person needs to recognise a chart
 * in a list without reading 120 lines of JSON. Computed once when an id is issued and stored with
 * the entry, because image and error entries no longer keep the query itself.
 */
export interface QuerySummary {
  /** query_title, when the query has one. */
  title?: string;
  /** e.g. ["bytes"] */
  metrics: string[];
  /** e.g. ["AS_src"]; ["Traffic"] for a total. */
  dimensions: string[];
  /** "last 24 h" or "2024-05-01 00:00 → 2024-05-02 00:00". */
  time: string;
  /** "all devices" or a short list of device names. */
  devices: string;
  /** png, jpeg, svg or pdf as asked (Kentik's default is png). */
  imageType: string;
  /** Kentik's viz_type, e.g. stackedArea. */
  viz?: string;
}

/** Caps keep a hostile query from turning a summary into megabytes in every /info answer. */
const MAX_TEXT = 120;
const MAX_ITEMS = 6;

const str = (v: unknown): string | undefined =>
  typeof v === 'string' && v.trim() !== '' ? clip(v.trim()) : undefined;
const clip = (s: string): string => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT - 1)}…` : s);
const strings = (v: unknown): string[] =>
  (Array.isArray(v) ? v : [v])
    .map(str)
    .filter((s): s is string => s !== undefined)
    .slice(0, MAX_ITEMS);
const record = (v: unknown): Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

export function summarizeQuery(query: unknown): QuerySummary {
  const top = record(query);
  const queries = Array.isArray(top.queries) ? top.queries.map(record) : [];
  // The first query that is not an overlay is the chart's own; overlays only add a line to it.
  const main = record((queries.find((q) => q.isOverlay !== true) ?? queries[0] ?? {}).query);
  const imageType = (str(top.imageType) ?? 'png').toLowerCase();
  const summary: QuerySummary = {
    metrics: strings(main.metric),
    dimensions: strings(main.dimension),
    time: describeTime(main),
    devices: describeDevices(main),
    imageType: imageType === 'jpg' ? 'jpeg' : imageType,
  };
  const title = str(main.query_title);
  if (title) summary.title = title;
  const viz = str(main.viz_type);
  if (viz) summary.viz = viz;
  return summary;
}

function describeTime(q: Record<string, unknown>): string {
  const from = str(q.starting_time);
  const to = str(q.ending_time);
  if (from && to) return `${from} → ${to}`;
  const lookback = Number(q.lookback_seconds);
  if (Number.isFinite(lookback) && lookback > 0) return `last ${duration(lookback)}`;
  return 'default time range';
}

function describeDevices(q: Record<string, unknown>): string {
  if (q.all_devices === true) return 'all devices';
  const names = [
    ...strings(q.device_name),
    ...strings(q.device_sites).map((s) => `site ${s}`),
    ...strings(q.device_labels).map((s) => `label ${s}`),
  ];
  if (names.length === 0) return 'all devices';
  const shown = names.slice(0, 3).join(', ');
  return names.length > 3 ? `${shown} +${names.length - 3} more` : shown;
}

/** 3600 → "1 h", 86400 → "24 h", 604800 → "7 d", 90 → "90 s". */
export function duration(seconds: number): string {
  if (seconds % 86400 === 0 && seconds >= 172800) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${Math.round(seconds)} s`;
}

/** One line of words, also what the dashboard's text search matches against. */
export function summaryLine(s: QuerySummary): string {
  const what = `${s.metrics.join(', ') || 'default metric'} by ${s.dimensions.join(', ') || 'total'}`;
  return [s.title, what, s.time, s.devices, s.imageType.toUpperCase()].filter(Boolean).join(' · ');
}

/** Whether two summaries say the same (to share one object between the entries of a query). */
export function sameSummary(a: QuerySummary, b: QuerySummary): boolean {
  return (
    a.time === b.time &&
    a.devices === b.devices &&
    a.imageType === b.imageType &&
    a.title === b.title &&
    a.viz === b.viz &&
    sameStrings(a.metrics, b.metrics) &&
    sameStrings(a.dimensions, b.dimensions)
  );
}

function sameStrings(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/** For decoding stored entries: a summary that does not have this shape is dropped, not trusted. */
export function isQuerySummary(v: unknown): v is QuerySummary {
  const r = v as Record<string, unknown> | null;
  const strArr = (a: unknown): boolean => Array.isArray(a) && a.every((x) => typeof x === 'string');
  return (
    typeof r === 'object' &&
    r !== null &&
    strArr(r.metrics) &&
    strArr(r.dimensions) &&
    typeof r.time === 'string' &&
    typeof r.devices === 'string' &&
    typeof r.imageType === 'string' &&
    (r.title === undefined || typeof r.title === 'string') &&
    (r.viz === undefined || typeof r.viz === 'string')
  );
}
