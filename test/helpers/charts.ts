import type { LogLine, Service } from './service.ts';

export interface HttpAnswer {
  status: number;
  headers: Headers;
  bytes: Buffer;
  json: any;
}

export async function http(
  url: string,
  init: RequestInit & { body?: string } = {},
): Promise<HttpAnswer> {
  const res = await fetch(url, init);
  const bytes = Buffer.from(await res.arrayBuffer());
  let json: any;
  if (bytes.length > 0 && (res.headers.get('content-type') ?? '').includes('json'))
    json = JSON.parse(bytes.toString('utf8'));
  return { status: res.status, headers: res.headers, bytes, json };
}

export const putChart = (base: string, name: string, body: unknown): Promise<HttpAnswer> =>
  http(`${base}/charts/${name}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

export const chartImage = (
  base: string,
  name: string,
  headers: Record<string, string> = {},
): Promise<HttpAnswer> => http(`${base}/charts/${name}/image`, { headers });

/**
 * Resolves at the next log line matching `pred` after the ones printed so far: call it before the
 * action whose log line is awaited (e.g. `const refreshed = nextLog(svc, …); await action;`).
 */
export function nextLog(
  svc: Service,
  pred: (l: LogLine) => boolean,
  timeoutMs?: number,
): Promise<LogLine> {
  const already = svc.logs().filter(pred).length;
  let seen = 0;
  return svc.waitForLog((l) => pred(l) && ++seen > already, timeoutMs);
}

export const refreshed =
  (name: string, outcome?: string) =>
  (l: LogLine): boolean =>
    l.msg === 'chart refreshed' &&
    l.chart === name &&
    (outcome === undefined || l.outcome === outcome);

export const refreshFailed =
  (name: string) =>
  (l: LogLine): boolean =>
    l.msg === 'chart refresh failed' && l.chart === name;

/** A distinct, valid SVG per label: the simulator's `svg-raw` outcome serves exactly these bytes. */
export const svg = (label: string): string =>
  `<svg xmlns="http://www.w3.org/2000/svg" width="100" height="20"><text x="0" y="15">${label}</text></svg>`;
