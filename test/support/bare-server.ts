/** The ceiling for a Node.js service: node:http answering the same image bytes from memory. */
import { readFileSync } from 'node:fs';
import http from 'node:http';

const bytes = readFileSync(process.env.BARE_FILE ?? '');
const headers = {
  'content-type': process.env.BARE_MIME ?? 'image/png',
  'content-length': String(bytes.length),
  'cache-control': 'public, max-age=3600',
  'x-content-type-options': 'nosniff',
};
http
  .createServer((_req, res) => {
    res.writeHead(200, headers);
    res.end(bytes);
  })
  .listen(Number(process.env.BARE_PORT), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
