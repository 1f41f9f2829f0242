#!/usr/bin/env node
// `npm run demo`: the whole service on one machine with no configuration. Starts the Kentik
// simulator and the cache (temporary CACHE_PATH, the simulator's credentials), posts the example
// queries, and prints the URLs to open. Ctrl-C stops both.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildApp } from '../app.ts';
import { loadConfig } from '../config.ts';
import { loggerOptions } from '../logger.ts';
import { startSimulator } from 'kentik-simulator';

const USAGE = `Usage: npm run demo -- [--port 8000] [--sim-port 9100] [--examples examples/queries] [--verbose] [--once]

Starts the Kentik API simulator and the cache, posts the example queries and prints URLs.
  --port N        port of the cache (default 8000; a free one if taken)
  --sim-port N    port of the simulator (default 9100; a free one if taken)
  --examples DIR  request files to post (default examples/queries)
  --verbose       show the cache's request log
  --once          exit after posting (for scripts and tests)`;

const ROOT = path.resolve(import.meta.dirname, '../..');

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      port: { type: 'string', default: '8000' },
      'sim-port': { type: 'string', default: '9100' },
      examples: { type: 'string', default: path.join(ROOT, 'examples/queries') },
      verbose: { type: 'boolean', default: false },
      once: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (args.help) {
    console.log(USAGE);
    return;
  }

  const sim = await withFallbackPort(Number(args['sim-port']), (port) => startSimulator({ port }));
  const cachePath = await mkdtemp(path.join(os.tmpdir(), 'kentik-image-cache-demo-'));
  const config = loadConfig({
    KT_AUTH_EMAIL: sim.email,
    KT_AUTH_TOKEN: sim.token,
    KENTIK_API_URL: sim.url,
    CACHE_PATH: cachePath,
    KENTIK_API_TIMEOUT: '30',
  });
  const pretty = process.stdout.isTTY;
  const { app } = await buildApp({
    config,
    logger: loggerOptions({ debug: false, level: args.verbose ? 'info' : 'error', pretty }),
  });
  const base = await withFallbackPort(Number(args.port), (port) =>
    app.listen({ host: '127.0.0.1', port }),
  );

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.log('\nStopping the cache and the simulator…');
    await app.close();
    await sim.close();
    await rm(cachePath, { recursive: true, force: true });
    console.log('Stopped.');
  };
  process.once('SIGINT', () => void stop().then(() => process.exit(0)));
  process.once('SIGTERM', () => void stop().then(() => process.exit(0)));

  console.log(`Kentik API simulator  ${sim.url}  (credentials ${sim.email} / its demo token)`);
  console.log(`Kentik image cache    ${base}  (CACHE_PATH ${cachePath})\n`);

  const files = (await readdir(args.examples)).filter((f) => f.endsWith('.json')).sort();
  console.log(
    `Posting ${files.length} example queries from ${path.relative(process.cwd(), args.examples) || '.'} …`,
  );
  const results = await Promise.all(
    files.map(async (file) => {
      const body = JSON.parse(await readFile(path.join(args.examples, file), 'utf8')) as Record<
        string,
        unknown
      >;
      delete body.expect_status;
      const post = await fetch(`${base}/requests`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const { id, msg } = (await post.json()) as { id?: string; msg?: string };
      if (!id) return { file, line: `POST answered ${post.status}: ${msg}` };
      const get = await fetch(`${base}/image/${id}`);
      const bytes = (await get.arrayBuffer()).byteLength;
      const type = get.headers.get('content-type') ?? '';
      return {
        file,
        line: get.ok
          ? `${get.status} ${type.padEnd(16)} ${String(Math.round(bytes / 1024)).padStart(4)} KB  ${base}/image/${id}`
          : `${get.status} (as expected for a bad query: GET ${base}/image/${id} shows Kentik's error)`,
      };
    }),
  );
  const width = Math.max(...results.map((r) => r.file.length));
  for (const r of results) console.log(`  ${r.file.padEnd(width)}  ${r.line}`);
  console.log(`
Open in a browser:
  ${base}/docs        interactive API documentation
  ${base}/info        what the cache holds
  ${base}/metrics     Prometheus metrics
and any image URL above. Try: npm run smoke -- --url ${base}
`);
  if (args.once) {
    await stop();
    return;
  }
  console.log('Press Ctrl-C to stop.');
}

/** Listens on the preferred port, or on any free one if it is taken, and says so. */
async function withFallbackPort<T>(
  preferred: number,
  start: (port: number) => Promise<T>,
): Promise<T> {
  try {
    return await start(preferred);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    console.log(`(port ${preferred} is taken; using a free one)`);
    return start(0);
  }
}

await main();
