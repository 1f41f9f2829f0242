import http from 'node:http';
import net from 'node:net';
import { crc32 } from 'node:zlib';
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

/**
 * A GET over a plain socket that only reads the status line and Content-Length, and notes when the
 * last byte arrived (`doneMs`, monoMs clock). For the fan-in, where hundreds of answers arrive at
 * once: node:http's client spends more CPU per 60 KB answer than the service does sending it, and on
 * a two-core machine that would be measured as the service's latency. The socket is connected before
 * the request is written, so connection set-up is not in `doneMs` either.
 *
 * A 200's body is not kept: only its length and CRC-32, folded in as it arrives. Keeping 500 bodies
 * of 50 KB made this process collect garbage while it should be reading, and doubled the time a
 * bare node:http server seemed to need for the same fan-in. Other answers keep their body.
 */
export function rawGet(
  url: string,
  timeoutMs: number,
): Promise<{
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body of an answer other than 200 (empty for a 200). */
  body: Buffer;
  bodyLength: number;
  bodyCrc32: number;
  doneMs: number;
  close: () => void;
}> {
  const { hostname, port, pathname, search } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let chunks: Buffer[] = [];
    let bodyLength = 0;
    let crc = 0;
    let expected = Number.POSITIVE_INFINITY;
    let head: { status: number; headers: http.IncomingHttpHeaders } | undefined;
    let done = false;
    const finish = (doneMs: number): void => {
      if (done) return;
      done = true;
      // Left open until the caller is done: a close now would make the server tear the connection
      // down while it is still answering the others, and that work would count as its latency.
      socket.setTimeout(0);
      resolve({
        status: head?.status ?? 0,
        headers: head?.headers ?? {},
        body: Buffer.concat(chunks),
        bodyLength,
        bodyCrc32: crc,
        doneMs,
        close: () => socket.destroy(),
      });
    };
    const body = (part: Buffer): void => {
      bodyLength += part.length;
      if (head?.status === 200) crc = crc32(part, crc);
      else chunks.push(part);
    };
    socket.setTimeout(timeoutMs, () =>
      socket.destroy(new Error(`no answer within ${timeoutMs} ms`)),
    );
    socket.on('error', reject);
    socket.on('connect', () =>
      socket.write(`GET ${pathname}${search} HTTP/1.1\r\nhost: ${hostname}:${port}\r\n\r\n`),
    );
    socket.on('data', (chunk: Buffer) => {
      if (head) body(chunk);
      else {
        chunks.push(chunk);
        const all = chunks.length === 1 ? chunk : Buffer.concat(chunks);
        const end = all.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = all.subarray(0, end).toString('latin1').split('\r\n');
        const headers: http.IncomingHttpHeaders = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
        }
        head = { status: Number(lines[0]!.split(' ')[1]), headers };
        expected = Number(headers['content-length'] ?? Number.NaN);
        chunks = [];
        body(all.subarray(end + 4));
      }
      if (bodyLength >= expected) finish(monoMs());
    });
    // No Content-Length (not expected from the service): the answer ends with the connection.
    socket.on('end', () => finish(monoMs()));
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
