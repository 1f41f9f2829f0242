#!/usr/bin/env node
// Smoke runner: POSTs every request file in a folder to a running cache, GETs each image, and
// says per step what happened. Exits non-zero if any request did not get its expected status.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

const USAGE = `Usage: npm run smoke -- [options]

POSTs each request file ({"api_query": …, "ttl": …}) to a running kentik-image-cache,
GETs the image, and prints one line per step. A file may carry "expect_status": N
(removed before posting) for a deliberately bad query; --expect FILE=N says the same from
the command line (and wins); the default expectation is 200.

Options:
  --url URL         base URL of the cache (default http://127.0.0.1:8000)
  --dir DIR         folder of request files (default examples/queries)
  --glob PATTERN    which files: *, ? and [..] as in a shell (default *.json)
  --expect FILE=N   expect status N for FILE (its name, e.g. bad_query.json=400); repeatable
  --concurrent      run all files at once instead of one after another
  --timeout SEC     per-request timeout in seconds (default 120)
  -h, --help        show this help

Ends with "N passed, N failed" and exits 1 if anything failed.`;

interface Outcome {
  file: string;
  ok: boolean;
}

function globToRegExp(glob: string): RegExp {
  // *, ? and [abc] as in a shell; everything else literal.
  const escaped = glob
    .replace(/[.+^${}()|\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

async function runOne(
  file: string,
  expectOverride: number | undefined,
  base: string,
  timeoutMs: number,
  log: (msg: string) => void,
): Promise<Outcome> {
  const name = path.basename(file);
  const say = (msg: string): void => log(`${name}: ${msg}`);
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    say(`cannot read request file: ${(err as Error).message}`);
    return { file, ok: false };
  }
  const expected =
    expectOverride ?? (typeof body.expect_status === 'number' ? body.expect_status : 200);
  delete body.expect_status;

  try {
    say(`posting to ${base}/requests`);
    const post = await fetch(`${base}/requests`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const answer = (await post.json().catch(() => ({}))) as { id?: string; msg?: string };
    if (post.status !== 200 || !answer.id) {
      say(`POST answered ${post.status}${answer.msg ? `: ${answer.msg}` : ''}`);
      return verdict(post.status);
    }
    say(`got id ${answer.id}`);
    const url = `${base}/image/${answer.id}`;
    say(`requesting ${url}`);
    const get = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const bytes = Buffer.from(await get.arrayBuffer());
    const type = get.headers.get('content-type') ?? '(none)';
    let detail = '';
    if (type.includes('json')) {
      try {
        detail = ` — ${(JSON.parse(bytes.toString('utf8')) as { msg?: string }).msg ?? ''}`;
      } catch {
        // not JSON after all
      }
    }
    say(`got: ${get.status}, ${type}, ${bytes.length} bytes${detail}`);
    return verdict(get.status);
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    say(`failed: ${e.cause?.code ?? e.name}: ${e.cause?.message ?? e.message}`);
    return { file, ok: false };
  }

  function verdict(status: number): Outcome {
    const ok = status === expected;
    say(ok ? `ok (expected ${expected})` : `FAILED: expected ${expected}, got ${status}`);
    return { file, ok };
  }
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        url: { type: 'string', default: 'http://127.0.0.1:8000' },
        dir: { type: 'string', default: 'examples/queries' },
        glob: { type: 'string', default: '*.json' },
        expect: { type: 'string', multiple: true, default: [] },
        concurrent: { type: 'boolean', default: false },
        timeout: { type: 'string', default: '120' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const base = args.url.replace(/\/+$/, '');
  const timeoutMs = Number(args.timeout) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    console.error(`--timeout must be a positive number of seconds\n\n${USAGE}`);
    return 2;
  }
  const expectations = new Map<string, number>();
  for (const e of args.expect) {
    const m = /^(.+)=([1-5]\d\d)$/.exec(e);
    if (!m) {
      console.error(
        `--expect ${e}: write it as FILE=STATUS, e.g. --expect bad_query.json=400\n\n${USAGE}`,
      );
      return 2;
    }
    expectations.set(path.basename(m[1]!), Number(m[2]));
  }
  const pattern = globToRegExp(args.glob);
  let files: string[];
  try {
    files = (await readdir(args.dir))
      .filter((f) => pattern.test(f))
      .sort()
      .map((f) => path.join(args.dir, f));
  } catch (err) {
    console.error(`cannot read --dir ${args.dir}: ${(err as Error).message}`);
    return 2;
  }
  if (files.length === 0) {
    console.error(`no files match ${args.glob} in ${args.dir}`);
    return 2;
  }
  const names = new Set(files.map((f) => path.basename(f)));
  const unknown = [...expectations.keys()].filter((n) => !names.has(n));
  if (unknown.length > 0) {
    console.error(`--expect names files that are not run: ${unknown.join(', ')}`);
    return 2;
  }
  const run = (f: string): Promise<Outcome> =>
    runOne(f, expectations.get(path.basename(f)), base, timeoutMs, log);
  const log = (msg: string): void => console.log(`${new Date().toISOString()} ${msg}`);
  const outcomes = args.concurrent
    ? await Promise.all(files.map(run))
    : await files.reduce<Promise<Outcome[]>>(
        async (acc, f) => [...(await acc), await run(f)],
        Promise.resolve([]),
      );
  const failed = outcomes.filter((o) => !o.ok);
  for (const f of failed) console.log(`failed: ${path.basename(f.file)}`);
  console.log(`${outcomes.length - failed.length} passed, ${failed.length} failed`);
  return failed.length === 0 ? 0 : 1;
}

process.exitCode = await main();
