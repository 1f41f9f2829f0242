/**
 * The ceiling for a Node.js service: node:http answering the same image bytes with the same
 * headers from memory, written the cheapest way node:http has (one flat header list).
 */
import http from 'node:http';

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

/** Answers every request with `bytes` and `headers` (a flat list, see answerHeaders). */
export function bareImageServer(bytes: Buffer, headers: readonly string[]): http.Server {
  const list = [...headers];
  return http.createServer((_req, res) => {
    res.writeHead(200, list);
    res.end(bytes);
  });
}
