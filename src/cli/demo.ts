#!/usr/bin/env node
// `npm run demo`: the whole service on one machine with no configuration. Starts the Kentik
// simulator and the cache (temporary CACHE_PATH, the simulator's credentials), posts the example
// queries, and prints the URLs to open. Ctrl-C stops both.
import { rmSync } from 'node:fs';
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
/** Printed URLs must still work when a person gets round to opening them. */
const DEMO_MIN_TTL = 15 * 60;

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

  // Ctrl-C reaches every process of the terminal's group, and npm/tsx pass it on again: expect
  // SIGINT more than once, and a stdout whose reader (`| tee`) is already gone. Neither may stop
  // the temporary cache directory from being removed.
  process.stdout.on('error', () => {});
  process.on('exit', () => rmSync(cachePath, { recursive: true, force: true }));
  let stopping: Promise<void> | undefined;
  const say = (msg: string): void => {
    try {
      console.log(msg);
    } catch {
      // stdout closed: nobody to tell
    }
  };
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      say('\nStopping the cache and the simulator…');
      await app.close().catch(() => {});
      await sim.close().catch(() => {});
      await rm(cachePath, { recursive: true, force: true });
      say('Stopped.');
    })());
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.on(signal, () => void stop().finally(() => process.exit(0)));

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
      body.ttl = Math.max(typeof body.ttl === 'number' ? body.ttl : 0, DEMO_MIN_TTL);
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

  // A named live chart: one stable URL that always shows a current image.
  const first = JSON.parse(await readFile(path.join(args.examples, files[0]!), 'utf8')) as {
    api_query: unknown;
  };
  const chart = await fetch(`${base}/charts/demo-traffic`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ api_query: first.api_query, refresh: 60 }),
  });
  if (chart.ok)
    console.log(
      `\nLive chart (refreshed on demand, at most once a minute): ${base}/charts/demo-traffic/image`,
    );
  console.log(`
Open in a browser:
  ${base}/            the dashboard: the charts above, live, with a form for new ones
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
