/**
 * The reference for the added-latency benchmark (scenario 4): the cheapest plain pass-through cache
 * that is still as durable as the service, as a process of its own (startBareCache, references.ts).
 * This machine is noisy, so the service's added latency is only meaningful beside what the same
 * rounds cost a program that does the least any durable fetch-on-POST cache must do:
 *
 * - POST /requests: id = sha256 of the body text + `_` + expiry (no validation, no canonical form);
 *   the upstream fetch starts at once, beside one journal line and its fdatasync; the id is handed
 *   out once that is done.
 * - The image: temp file, fdatasync, rename, directory fsync; then a settle line, fdatasync; then
 *   every GET /image/{id} waiting for it is answered.
 *
 * BARE_FSYNC=off skips every fsync and fdatasync (the files are still written): the floor of Node,
 * the proxy and the scheduler alone. Entries are kept in memory for good: it lives for one scenario.
 */
import { createHash } from 'node:crypto';
import { open, rename } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Agent, request } from 'undici';

const dir = process.env.BARE_CACHE_DIR ?? '';
const chartUrl = `${process.env.KENTIK_API_URL}/query/topXchart`;
const email = process.env.KT_AUTH_EMAIL ?? '';
const token = process.env.KT_AUTH_TOKEN ?? '';
const fsync = process.env.BARE_FSYNC !== 'off';

// Keep-alive, like the service's client (src/kentik/client.ts): no connection set-up per call.
const agent = new Agent({ keepAliveTimeout: 30_000 });
const journal = await open(path.join(dir, 'journal'), 'a');
// Opened once: a rename is durable once its directory is fsynced.
const dirHandle = await open(dir, 'r');

interface Entry {
  /** Resolves once the entry's journal line is on disk. */
  durable: Promise<void>;
  image?: Buffer;
  waiters: http.ServerResponse[];
}
const entries = new Map<string, Entry>();

async function append(line: string): Promise<void> {
  await journal.write(line);
  if (fsync) await journal.datasync();
}

async function fetchChart(query: string): Promise<Buffer> {
  const res = await request(chartUrl, {
    method: 'POST',
    dispatcher: agent,
    headers: {
      'content-type': 'application/json',
      'x-ch-auth-email': email,
      'x-ch-auth-api-token': token,
    },
    body: query,
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`upstream answered ${res.statusCode}`);
  const uri = (JSON.parse(text) as { dataUri: string }).dataUri;
  return Buffer.from(uri.slice(uri.indexOf(',') + 1), 'base64');
}

async function store(id: string, image: Buffer): Promise<void> {
  const temp = path.join(dir, `${id}.tmp`);
  const file = await open(temp, 'w');
  try {
    await file.writeFile(image);
    if (fsync) await file.datasync();
  } finally {
    await file.close();
  }
  await rename(temp, path.join(dir, id));
  if (fsync) await dirHandle.sync();
  await append(`S ${id}\n`);
}

function send(res: http.ServerResponse, image: Buffer): void {
  res.writeHead(200, { 'content-type': 'image/png', 'content-length': image.length });
  res.end(image);
}

async function fill(id: string, entry: Entry, fetching: Promise<Buffer>): Promise<void> {
  try {
    const image = await fetching;
    await store(id, image);
    entry.image = image;
    for (const res of entry.waiters.splice(0)) send(res, image);
  } catch (err) {
    console.error(`${id}: ${(err as Error).message}`);
    entries.delete(id);
    for (const res of entry.waiters.splice(0)) res.writeHead(502).end();
  }
}

async function post(raw: string, res: http.ServerResponse): Promise<void> {
  const body = JSON.parse(raw) as { api_query: unknown; ttl: number };
  const hash = createHash('sha256').update(raw).digest('hex');
  const id = `${hash}_${Math.floor(Date.now() / 1000) + body.ttl}`;
  let entry = entries.get(id);
  if (!entry) {
    const query = JSON.stringify(body.api_query);
    const fetching = fetchChart(query);
    entry = { durable: append(`E ${id} ${query}\n`), waiters: [] };
    entries.set(id, entry);
    void fill(id, entry, fetching);
  }
  await entry.durable;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ id }));
}

const server = http.createServer((req, res) => {
  const url = req.url ?? '';
  if (req.method === 'POST' && url === '/requests') {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      post(Buffer.concat(chunks).toString('utf8'), res).catch((err: Error) => {
        console.error(`POST /requests: ${err.message}`);
        res.writeHead(400).end();
      });
    });
  } else if (req.method === 'GET' && url.startsWith('/image/')) {
    const entry = entries.get(url.slice('/image/'.length));
    if (!entry) res.writeHead(404).end();
    else if (entry.image) send(res, entry.image);
    else entry.waiters.push(res);
  } else res.writeHead(404).end();
});
server.listen(0, '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
process.on('SIGTERM', () => process.exit(0));
