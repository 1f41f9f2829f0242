/**
 * The ceiling for a Node.js service: node:http answering the same image bytes with the same
 * headers from memory, written the cheapest way node:http has (one flat header list).
 */
import http from 'node:http';
import { monoMs } from './clock.ts';

/** Headers node:http adds to every answer by itself, the service's and the reference's alike. */
const ADDED_BY_NODE = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding']);

/** The headers of an answer (`res.rawHeaders`) as a flat name, value… list, without Node's own. */
export function answerHeaders(rawHeaders: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2)
    if (!ADDED_BY_NODE.has(rawHeaders[i]!.toLowerCase()))
      out.push(rawHeaders[i]!, rawHeaders[i + 1]!);
  return out;
}

/**
 * Answers every request with `bytes` and `headers` (a flat list, see answerHeaders). For the
 * fan-in reference, requests to `/held…` wait until a request to `/release?n=N` finds N of them
 * waiting; it answers them all in one go and then itself, with the monotonic time (test/support
 * clock.ts, the same clock in every process) at which it started answering.
 */
export function bareImageServer(bytes: Buffer, headers: readonly string[]): http.Server {
  const list = [...headers];
  const held: http.ServerResponse[] = [];
  let release: { want: number; res: http.ServerResponse } | undefined;
  const answer = (res: http.ServerResponse): void => {
    res.writeHead(200, list);
    res.end(bytes);
  };
  const maybeRelease = (): void => {
    if (!release || held.length < release.want) return;
    const { res } = release;
    release = undefined;
    const at = monoMs();
    for (const r of held.splice(0)) answer(r);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ releasedAt: at }));
  };
  return http.createServer((req, res) => {
    const url = req.url ?? '';
    if (url.startsWith('/held')) {
      held.push(res);
      maybeRelease();
    } else if (url.startsWith('/release')) {
      release = { want: Number(new URL(url, 'http://x').searchParams.get('n') ?? 1), res };
      maybeRelease();
    } else answer(res);
  });
}
