import http from 'node:http';
import { monoMs } from './util.ts';

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** As received: name, value, name, value… */
  rawHeaders: string[];
  body: Buffer;
}

/** One HTTP exchange over node:http (no fetch: its per-request overhead would show in the numbers). */
export function request(
  url: string,
  opts: {
    method?: string;
    body?: string | Buffer;
    headers?: Record<string, string>;
    agent?: http.Agent | false;
    timeoutMs?: number;
  } = {},
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: opts.method ?? 'GET',
        agent: opts.agent ?? false,
        headers: {
          ...(opts.body !== undefined
            ? {
                'content-type': 'application/json',
                'content-length': String(Buffer.byteLength(opts.body)),
              }
            : {}),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (opts.timeoutMs)
      req.setTimeout(opts.timeoutMs, () =>
        req.destroy(new Error(`no answer within ${opts.timeoutMs} ms`)),
      );
    req.end(opts.body);
  });
}

export async function getJson(url: string, agent?: http.Agent): Promise<any> {
  const r = await request(url, { agent });
  if (r.status !== 200)
    throw new Error(`GET ${url} answered ${r.status}: ${r.body.toString('utf8').slice(0, 300)}`);
  return JSON.parse(r.body.toString('utf8'));
}

/** POSTs an image request to the service and returns the id. */
export async function postRequest(base: string, body: string, agent?: http.Agent): Promise<string> {
  const r = await request(`${base}/requests`, { method: 'POST', body, agent });
  if (r.status !== 200)
    throw new Error(
      `POST /requests answered ${r.status}: ${r.body.toString('utf8').slice(0, 300)}`,
    );
  return (JSON.parse(r.body.toString('utf8')) as { id: string }).id;
}

/** Reads samples of one metric from the Prometheus text format, summed over labels matching `labels`. */
export function metricValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number {
  let total = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const lbl = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => lbl.includes(`${k}="${v}"`))) {
      total += Number(m[3]);
      seen = true;
    }
  }
  return seen ? total : Number.NaN;
}

export async function scrape(base: string): Promise<{ text: string; at: number }> {
  const r = await request(`${base}/metrics`);
  const at = monoMs();
  if (r.status !== 200) throw new Error(`GET /metrics answered ${r.status}`);
  return { text: r.body.toString('utf8'), at };
}
