/** Small HTTP helpers the tests share (fetch based: the no-secret setup watches every answer). */
import { sampleRequest, type KentikRequest } from 'kentik-simulator';

export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json, headers: res.headers };
}

/** POSTs a query and returns the id, failing loudly on anything but 200. */
export async function requestImage(url: string, apiQuery: unknown, ttl?: number): Promise<string> {
  const r = await postJson(
    `${url}/requests`,
    ttl === undefined ? { api_query: apiQuery } : { api_query: apiQuery, ttl },
  );
  if (r.status !== 200)
    throw new Error(`POST /requests answered ${r.status}: ${JSON.stringify(r.json)}`);
  return r.json.id as string;
}

export async function getImage(
  url: string,
  id: string,
  init: RequestInit = {},
): Promise<{ status: number; bytes: Buffer; headers: Headers; json: any }> {
  const res = await fetch(`${url}/image/${id}`, init);
  const bytes = Buffer.from(await res.arrayBuffer());
  let json: any;
  if ((res.headers.get('content-type') ?? '').includes('json'))
    json = JSON.parse(bytes.toString('utf8'));
  return { status: res.status, bytes, headers: res.headers, json };
}

/** Sums the samples of one metric (those carrying every label in `labels`) from Prometheus text. */
export function metricFromText(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const lbl = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => lbl.includes(`${k}="${v}"`)))
      total += Number(m[3]);
  }
  return total;
}

/** Reads one sample's value from the service's /metrics. */
export async function metric(
  url: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  return metricFromText(await (await fetch(`${url}/metrics`)).text(), name, labels);
}

/** A valid Kentik topXchart query (the simulator's fixture); `n` makes it unique. */
export function kentikQuery(n: number | string = 0, imageType = 'png'): Record<string, unknown> {
  return {
    ...sampleRequest(
      { query_title: `test query ${n}` },
      { imageType: imageType as KentikRequest['imageType'] },
    ),
  };
}

export async function getJson(url: string): Promise<any> {
  return (await fetch(url)).json();
}

/**
 * Polls `fn` until it returns something other than undefined. For state that announces itself
 * only through an endpoint (a metric, a status code); never a substitute for awaiting an event.
 */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 20_000,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
