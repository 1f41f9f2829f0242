/**
 * The simulator's HTTP server (fastify): Kentik's POST /api/v5/query/topXchart with auth, fault
 * injection, validation and real chart rendering, plus admin endpoints for tests.
 */
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { queryHash } from './hash.ts';
import { checkAuth } from './auth.ts';
import {
  type Decision,
  type FaultConfig,
  type ScriptedOutcome,
  FaultEngine,
  checkFaults,
  checkScript,
} from './faults.ts';
import { malformedDataUriBody, malformedJsonBody } from './malformed.ts';
import { renderChart, warmUp } from './render.ts';
import { type SimulatorStats, StatsRecorder } from './stats.ts';
import { type KentikRequest, validateRequest } from './validate.ts';

export const DEFAULT_EMAIL = 'demo@example.com';
export const DEFAULT_TOKEN = 'demo-token';
export const API_BASE_PATH = '/api/v5';
export const CHART_PATH = `${API_BASE_PATH}/query/topXchart`;
/** Largest accepted request body (real queries are 3-6 KB). */
export const BODY_LIMIT = 1024 * 1024;

export interface SimulatorOptions {
  /** Interface to listen on; default 127.0.0.1. */
  host?: string;
  /** Port; default 0 (a free port) from code, 9100 from the CLI. */
  port?: number;
  /** Credentials the simulator accepts; default demo@example.com / demo-token. */
  email?: string;
  token?: string;
  /** Fault settings at start (and after reset()). */
  faults?: Partial<FaultConfig>;
  /** fastify request logging (pino to stdout); default false. */
  logger?: boolean;
  /**
   * Serve /admin/* to non-loopback clients too (default false: only 127.0.0.0/8 and ::1 may
   * change faults or read stats, whatever interface the simulator listens on).
   */
  allowRemoteAdmin?: boolean;
}

export interface Simulator {
  /** Base API URL to use as KENTIK_API_URL, e.g. http://127.0.0.1:41234/api/v5 */
  url: string;
  port: number;
  email: string;
  token: string;
  /** Merge fault settings. */
  setFaults(f: Partial<FaultConfig>): void;
  /** Queue outcomes: each following call takes one before rate limits and rendering apply. */
  script(outcomes: ScriptedOutcome[]): void;
  stats(): SimulatorStats;
  /** Faults back to defaults + start options, script cleared, stats zeroed, hung sockets closed. */
  reset(): void;
  /** Stop listening and destroy every open connection (hung ones too). */
  close(): Promise<void>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** Kentik-style error message per status when a fault or script gives none. */
const STATUS_MESSAGES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Authentication required',
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests: API rate limit exceeded, retry later',
  500: 'Internal Server Error: query failed',
  503: 'Service Unavailable: the query engine is overloaded, retry later',
};

/** 502 and 504 come from the load balancer in front of the API: HTML, as nginx writes them. */
function gatewayPage(status: 502 | 504): string {
  const title = status === 502 ? '502 Bad Gateway' : '504 Gateway Time-out';
  return `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`;
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

function sendJson(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.code(status).header('content-type', JSON_TYPE).send(JSON.stringify(body));
}

function parseJson(raw: unknown): { ok: true; value: unknown } | { ok: false } {
  if (typeof raw !== 'string' || raw.trim() === '') return { ok: false };
  try {
    return { ok: true, value: JSON.parse(raw) as unknown };
  } catch {
    return { ok: false };
  }
}

/**
 * Recently rendered charts by (query hash, minute): identical calls within a minute get the
 * same bytes anyway, so a benchmark hammering one query does not spend its CPU on chart.js.
 */
class RenderCache {
  #max: number;
  #entries = new Map<string, { mime: string; bytes: Buffer }>();
  constructor(max: number) {
    this.#max = max;
  }
  async get(
    hash: string,
    body: KentikRequest,
    now: Date,
  ): Promise<{ mime: string; bytes: Buffer }> {
    const key = `${hash}:${Math.floor(now.getTime() / 60_000)}`;
    const hit = this.#entries.get(key);
    if (hit) {
      this.#entries.delete(key);
      this.#entries.set(key, hit);
      return hit;
    }
    const rendered = await renderChart(body, now);
    this.#entries.set(key, rendered);
    while (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
    return rendered;
  }
}

export async function startSimulator(opts: SimulatorOptions = {}): Promise<Simulator> {
  const host = opts.host ?? '127.0.0.1';
  const email = opts.email ?? DEFAULT_EMAIL;
  const token = opts.token ?? DEFAULT_TOKEN;
  const startFaults = checkFaults(opts.faults ?? {});
  if (!startFaults.ok) throw new TypeError(`invalid faults: ${startFaults.message}`);
  if (!email || !token) throw new TypeError('email and token must be non-empty');

  const engine = new FaultEngine(startFaults.value);
  const stats = new StatsRecorder();
  const renders = new RenderCache(64);
  const hung = new Set<Socket>();
  /** Chart calls already counted by the handler (the error handler counts the others). */
  const counted = new WeakSet<FastifyRequest>();
  const shutdown = new AbortController();

  const app = Fastify({
    logger: opts.logger
      ? {
          level: 'info',
          // The default serializers log no headers; redact anyway in case that changes.
          redact: ['req.headers["x-ch-auth-api-token"]', 'req.headers["x-ch-auth-email"]'],
        }
      : false,
    bodyLimit: BODY_LIMIT,
    forceCloseConnections: true,
  });

  // Bodies arrive as strings whatever their content type: the handler parses them after auth
  // and the fault decision, and answers Kentik-style errors itself.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((error: { statusCode?: number; message?: string }, request, reply) => {
    const status =
      error.statusCode && error.statusCode >= 400 && error.statusCode < 600
        ? error.statusCode
        : 500;
    if (request.url.startsWith(CHART_PATH)) {
      if (!counted.has(request)) stats.call(null);
      stats.answer(status);
    }
    if (status >= 500) request.log.error({ err: error }, 'simulator error');
    const message =
      status === 413
        ? `Request body too large: limit is ${BODY_LIMIT} bytes`
        : status < 500
          ? (error.message ?? 'Bad Request')
          : 'Internal Server Error';
    return sendJson(reply, status, { error: message });
  });

  app.setNotFoundHandler((_request, reply) => sendJson(reply, 404, { error: 'Not Found' }));

  /** Wait the latency; false if the client went away or the simulator is closing. */
  async function wait(ms: number, reply: FastifyReply): Promise<boolean> {
    if (shutdown.signal.aborted || reply.raw.destroyed) return false;
    if (ms <= 0) return true;
    const ac = new AbortController();
    const abort = (): void => ac.abort();
    reply.raw.once('close', abort);
    shutdown.signal.addEventListener('abort', abort, { once: true });
    try {
      await sleep(ms, undefined, { signal: ac.signal });
      return true;
    } catch {
      return false;
    } finally {
      reply.raw.off('close', abort);
      shutdown.signal.removeEventListener('abort', abort);
    }
  }

  function drop(
    request: FastifyRequest,
    reply: FastifyReply,
    kind: 'reset' | 'aborted',
  ): FastifyReply {
    stats.answer(kind);
    reply.hijack();
    const socket = request.raw.socket;
    // RST rather than FIN where possible: what a crashed upstream or middlebox looks like.
    if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
    else socket.destroy();
    return reply;
  }

  function hang(request: FastifyRequest, reply: FastifyReply): FastifyReply {
    stats.answer('hang');
    reply.hijack();
    const socket = request.raw.socket;
    hung.add(socket);
    socket.once('close', () => hung.delete(socket));
    return reply;
  }

  /** 200 and a JSON prefix, then one byte every 1/bytesPerSecond s until the client gives up. */
  function drip(
    request: FastifyRequest,
    reply: FastifyReply,
    bytesPerSecond: number,
  ): FastifyReply {
    stats.answer('drip');
    reply.hijack();
    const socket = request.raw.socket;
    hung.add(socket);
    const res = reply.raw;
    res.writeHead(200, { 'content-type': JSON_TYPE });
    res.write('{"dataUri":"data:image/png;base64,');
    const timer = setInterval(() => res.write('A'), Math.max(1, 1000 / bytesPerSecond));
    socket.once('close', () => {
      clearInterval(timer);
      hung.delete(socket);
    });
    return reply;
  }

  /** A PNG-looking dataUri of `bytes` image bytes, streamed in chunks with no Content-Length. */
  function oversize(reply: FastifyReply, bytes: number): FastifyReply {
    stats.answer('oversize');
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': JSON_TYPE });
    res.write('{"dataUri":"data:image/png;base64,');
    const chunk = Buffer.alloc(48 * 1024, 0x41); // 48 KiB of "A": 36 KiB of image each
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).toString('base64');
    res.write(png);
    let left = Math.ceil(((bytes - 8) * 4) / 3 / 4) * 4;
    const pump = (): void => {
      while (left > 0 && !res.destroyed) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          res.once('drain', pump);
          return;
        }
      }
      if (!res.destroyed) res.end('"}');
    };
    res.on('error', () => {});
    pump();
    return reply;
  }

  function sendStatus(reply: FastifyReply, d: Extract<Decision, { kind: 'status' }>): FastifyReply {
    stats.answer(d.status);
    if (d.status > 599) {
      // Beyond what fastify sends: write it raw, as a broken proxy would.
      reply.hijack();
      reply.raw.writeHead(d.status, { 'content-type': JSON_TYPE });
      reply.raw.end(JSON.stringify({ error: d.message ?? `HTTP ${d.status}` }));
      return reply;
    }
    if (d.retryAfter !== null) reply.header('retry-after', d.retryAfter);
    if ((d.status === 502 || d.status === 504) && d.message === undefined) {
      return reply.code(d.status).header('content-type', 'text/html').send(gatewayPage(d.status));
    }
    return sendJson(reply, d.status, {
      error: d.message ?? STATUS_MESSAGES[d.status] ?? `HTTP ${d.status}`,
    });
  }

  function sendImage(
    reply: FastifyReply,
    hash: string | null,
    mime: string,
    bytes: Buffer,
  ): FastifyReply {
    stats.answer(200);
    stats.image(hash, bytes);
    return sendJson(reply, 200, { dataUri: `data:${mime};base64,${bytes.toString('base64')}` });
  }

  app.post(CHART_PATH, async (request, reply) => {
    reply.raw.once('close', stats.enter());
    const parsed = parseJson(request.body);
    const hash = parsed.ok ? queryHash(parsed.value) : null;
    stats.call(hash);
    counted.add(request);

    const auth = checkAuth(request.headers, email, token);
    const decision: Decision = auth.ok ? engine.decide(Date.now()) : { kind: 'ok' };
    if (decision.kind === 'hang') return hang(request, reply);
    if (!(await wait(engine.delayMs(), reply))) return drop(request, reply, 'aborted');

    if (!auth.ok) {
      stats.answer(auth.status);
      return sendJson(reply, auth.status, { error: auth.error });
    }
    switch (decision.kind) {
      case 'reset':
        return drop(request, reply, 'reset');
      case 'status':
        return sendStatus(reply, decision);
      case 'malformed-json':
        stats.answer('malformed-json');
        return reply
          .code(200)
          .header('content-type', JSON_TYPE)
          .send(malformedJsonBody(decision.variant));
      case 'malformed-data-uri':
        stats.answer('malformed-data-uri');
        return reply
          .code(200)
          .header('content-type', JSON_TYPE)
          .send(malformedDataUriBody(decision.variant).body);
      case 'svg-raw':
        return sendImage(reply, hash, 'image/svg+xml', Buffer.from(decision.svg, 'utf8'));
      case 'drip':
        return drip(request, reply, decision.bytesPerSecond);
      case 'oversize':
        return oversize(reply, decision.bytes);
      case 'ok':
        break;
    }

    if (!parsed.ok) {
      stats.answer(400);
      return sendJson(reply, 400, { error: 'Invalid request body: expected a JSON query object' });
    }
    const check = validateRequest(parsed.value);
    if (!check.ok) {
      stats.answer(400);
      return sendJson(reply, 400, { error: check.message });
    }
    const { mime, bytes } = await renders.get(hash ?? '', check.value, new Date());
    if (reply.raw.destroyed) return drop(request, reply, 'aborted');
    return sendImage(reply, hash, mime, bytes);
  });

  // --- admin endpoints (tests, benchmarks) -------------------------------------------------
  const admin = (request: FastifyRequest, reply: FastifyReply): boolean => {
    if (opts.allowRemoteAdmin || isLoopback(request.socket.remoteAddress)) return true;
    sendJson(reply, 403, {
      error:
        'Admin endpoints answer loopback clients only (start with --admin-anywhere to allow others)',
    });
    return false;
  };

  app.get('/healthz', async (_request, reply) => sendJson(reply, 200, { status: 'ok' }));

  app.get('/admin/stats', async (request, reply) => {
    if (!admin(request, reply)) return reply;
    return sendJson(reply, 200, stats.snapshot());
  });

  app.get('/admin/faults', async (request, reply) => {
    if (!admin(request, reply)) return reply;
    return sendJson(reply, 200, engine.config);
  });

  app.post('/admin/faults', async (request, reply) => {
    if (!admin(request, reply)) return reply;
    const body = parseJson(request.body);
    const faults = body.ok
      ? checkFaults(body.value)
      : { ok: false as const, message: 'body must be JSON' };
    if (!faults.ok) return sendJson(reply, 400, { error: faults.message });
    engine.set(faults.value);
    return sendJson(reply, 200, engine.config);
  });

  app.post('/admin/script', async (request, reply) => {
    if (!admin(request, reply)) return reply;
    const body = parseJson(request.body);
    const script = body.ok
      ? checkScript(body.value)
      : { ok: false as const, message: 'body must be JSON' };
    if (!script.ok) return sendJson(reply, 400, { error: script.message });
    engine.script(script.value);
    return sendJson(reply, 200, { queued: engine.queued });
  });

  const resetAll = (): void => {
    engine.reset();
    stats.reset();
    for (const socket of hung) socket.destroy();
    hung.clear();
  };

  app.post('/admin/reset', async (request, reply) => {
    if (!admin(request, reply)) return reply;
    resetAll();
    return sendJson(reply, 200, { ok: true });
  });

  await warmUp();
  await app.listen({ host, port: opts.port ?? 0 });
  const address = app.server.address() as AddressInfo;
  const urlHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const url = `http://${urlHost.includes(':') ? `[${urlHost}]` : urlHost}:${address.port}${API_BASE_PATH}`;

  let closing: Promise<void> | undefined;
  return {
    url,
    port: address.port,
    email,
    token,
    setFaults(f) {
      const checked = checkFaults(f);
      if (!checked.ok) throw new TypeError(`invalid faults: ${checked.message}`);
      engine.set(checked.value);
    },
    script(outcomes) {
      const checked = checkScript(outcomes);
      if (!checked.ok) throw new TypeError(`invalid script: ${checked.message}`);
      engine.script(checked.value);
    },
    stats: () => stats.snapshot(),
    reset: resetAll,
    close() {
      closing ??= (async () => {
        shutdown.abort();
        for (const socket of hung) socket.destroy();
        hung.clear();
        await app.close();
      })();
      return closing;
    },
  };
}
