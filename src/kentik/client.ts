import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyBaseLogger } from 'fastify';
import { Agent, errors as undiciErrors, request } from 'undici';
import { redactUrlCredentials, type Config } from '../config.ts';
import type { QueryJson } from '../domain/entry.ts';
import type { AppError } from '../errors.ts';
import { KentikApiError, KentikBadResponseError, KentikUnavailableError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import { decodeDataUri, type DecodedImage } from './data-uri.ts';
import { parseRetryAfter } from './retry-after.ts';

/** Statuses Kentik's own SDK treats as intermittent; everything else is final. */
const RETRY_STATUSES = new Set([429, 502, 503, 504]);
/** A Retry-After longer than this is not waited for: the fetch fails and the client may try later. */
const MAX_RETRY_AFTER_MS = 120_000;
const MAX_MESSAGE_CHARS = 500;
/** Bytes of JSON around the base64 of an image in Kentik's answer that we allow for. */
const ENVELOPE_BYTES = 64 * 1024;

/** The answer is larger than KENTIK_MAX_IMAGE_BYTES allows: final, never retried. */
class TooLargeError extends Error {}

export interface KentikClient {
  /** Fetches one chart, with retries; throws an AppError subclass describing the final failure. */
  /** `query` is the query as JSON text, sent as it is. */
  fetchChart(query: QueryJson, ctx: FetchContext): Promise<DecodedImage>;
  close(): Promise<void>;
}

export interface FetchContext {
  id: string;
  signal?: AbortSignal;
  /** Awaited before every attempt (a cluster-wide hold after a 429 with Retry-After). */
  beforeAttempt?: (signal?: AbortSignal) => Promise<void>;
  /** Kentik asked to wait this long before the next call (Retry-After). */
  onRetryAfter?: (ms: number) => void;
}

export interface KentikClientDeps {
  config: Pick<
    Config,
    'kentikApiUrl' | 'ktAuthEmail' | 'ktAuthToken' | 'kentikApiRetries' | 'kentikApiTimeoutMs'
  > & { kentikApiBackoffMs?: number; kentikMaxImageBytes?: number };
  log: FastifyBaseLogger;
  metrics: Metrics;
  /** Random source for jitter; injectable for tests. */
  random?: () => number;
}

type Attempt =
  | { ok: true; image: DecodedImage }
  | { ok: false; error: AppError; retryable: boolean; retryAfterMs?: number; outcome: string };

export function createKentikClient({
  config,
  log,
  metrics,
  random = Math.random,
}: KentikClientDeps): KentikClient {
  const url = `${config.kentikApiUrl}/query/topXchart`;
  const timeout = config.kentikApiTimeoutMs;
  const backoffMs = config.kentikApiBackoffMs ?? 1000;
  const agent = new Agent({
    connect: { timeout: Math.min(10_000, timeout) },
    headersTimeout: timeout,
    bodyTimeout: timeout,
    keepAliveTimeout: 30_000,
  });
  const token = config.ktAuthToken;
  const maxImageBytes = config.kentikMaxImageBytes ?? 16 * 1024 * 1024;
  // The image arrives base64-encoded (4/3 of its size) inside a small JSON object.
  const maxAnswerBytes = Math.ceil(maxImageBytes / 3) * 4 + ENVELOPE_BYTES;
  /** Anything we pass on or log: the token and any URL credentials removed *before* it is cut. */
  const clean = (text: string): string => redactUrlCredentials(token.scrub(text));

  async function attempt(body: Buffer, signal: AbortSignal | undefined): Promise<Attempt> {
    // One plain timer and controller per attempt, covering connect, headers and the whole body. Not
    // AbortSignal.any: on Node 20 its timeout can fail to fire (nodejs/node#57736), and a body
    // trickled a byte at a time never trips undici's bodyTimeout (it measures gaps, not the total).
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Error('attempt timed out')), timeout);
    const onAbort = (): void => controller.abort(signal?.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await attemptWith(body, signal, controller.signal);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async function attemptWith(
    body: Buffer,
    signal: AbortSignal | undefined,
    attemptSignal: AbortSignal,
  ): Promise<Attempt> {
    let status: number;
    let text: string;
    let retryAfterHeader: string | undefined;
    try {
      const res = await request(url, {
        method: 'POST',
        dispatcher: agent,
        signal: attemptSignal,
        headers: {
          'content-type': 'application/json',
          accept: 'application/json',
          'x-ch-auth-email': config.ktAuthEmail,
          'x-ch-auth-api-token': token.reveal(),
        },
        body,
      });
      status = res.statusCode;
      const ra = res.headers['retry-after'];
      retryAfterHeader = Array.isArray(ra) ? ra[0] : ra;
      const length = Number(res.headers['content-length']);
      if (Number.isFinite(length) && length > maxAnswerBytes) {
        res.body.destroy();
        throw new TooLargeError();
      }
      text = await readLimited(res.body, maxAnswerBytes);
    } catch (err) {
      if (signal?.aborted) throw err; // shutting down: not an upstream failure
      if (err instanceof TooLargeError) {
        return {
          ok: false,
          retryable: false,
          outcome: 'too_large',
          error: new KentikBadResponseError(
            `Kentik API sent an answer larger than ${maxAnswerBytes} bytes, more than an image of KENTIK_MAX_IMAGE_BYTES (${maxImageBytes} bytes) takes; it was cut off and not stored. Ask for a smaller chart or raise KENTIK_MAX_IMAGE_BYTES.`,
          ),
        };
      }
      const timedOut =
        attemptSignal.aborted ||
        err instanceof undiciErrors.HeadersTimeoutError ||
        err instanceof undiciErrors.BodyTimeoutError ||
        err instanceof undiciErrors.ConnectTimeoutError;
      const detail = timedOut
        ? `no answer within ${timeout / 1000} s`
        : clean(describeNetworkError(err));
      return {
        ok: false,
        retryable: true,
        outcome: timedOut ? 'timeout' : 'network',
        error: new KentikUnavailableError(
          `Kentik API did not answer: ${detail}. The image could not be fetched; POST the query again later.`,
          { cause: err },
        ),
      };
    }

    if (status === 200) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return badResponse('its answer is not valid JSON');
      }
      const decoded = decodeDataUri((parsed as { dataUri?: unknown } | null)?.dataUri);
      if (typeof decoded === 'string') return badResponse(decoded);
      if (decoded.bytes.length > maxImageBytes) {
        return badResponse(
          `its image has ${decoded.bytes.length} bytes, more than KENTIK_MAX_IMAGE_BYTES (${maxImageBytes})`,
        );
      }
      return { ok: true, image: decoded };
    }

    if (status < 400 || status > 599) {
      // 204, a redirect, 600, 999…: not an image and not an error Kentik documents. Passing such a
      // status on would confuse clients (a 204 with a JSON body, a 302 without Location).
      return {
        ok: false,
        retryable: false,
        outcome: 'unexpected_status',
        error: new KentikBadResponseError(
          `Kentik API gave an unexpected answer: HTTP ${status} (expected 200 with an image, or an error status); no image was stored. This is an upstream or proxy fault; check KENTIK_API_URL, then POST the query again.`,
        ),
      };
    }

    const message = upstreamMessage(clean(text), status);
    return {
      ok: false,
      retryable: RETRY_STATUSES.has(status),
      retryAfterMs: parseRetryAfter(retryAfterHeader),
      outcome: `http_${status}`,
      error: new KentikApiError(status, message),
    };
  }

  function badResponse(reason: string): Attempt {
    return {
      ok: false,
      retryable: false,
      outcome: 'bad_response',
      error: new KentikBadResponseError(
        `Kentik API answered 200 but ${reason}; no image was stored. This is an upstream fault; POST the query again later.`,
      ),
    };
  }

  return {
    async fetchChart(query, { id, signal, beforeAttempt, onRetryAfter }) {
      const body = Buffer.from(query);
      const started = performance.now();
      for (let n = 0; ; n++) {
        await beforeAttempt?.(signal);
        const t0 = performance.now();
        const result = await attempt(body, signal);
        const seconds = (performance.now() - t0) / 1000;
        metrics.upstreamDuration.observe(seconds);
        metrics.upstreamCalls.inc({ outcome: result.ok ? 'ok' : result.outcome });
        if (result.ok) {
          log.info(
            {
              id,
              attempt: n + 1,
              outcome: 'ok',
              mime: result.image.mime,
              bytes: result.image.bytes.length,
              durationMs: Math.round(seconds * 1000),
            },
            'kentik call',
          );
          metrics.upstreamFetches.inc({ outcome: 'ok' });
          return result.image;
        }
        const willRetry = result.retryable && n < config.kentikApiRetries;
        let delay = 0;
        if (willRetry) {
          delay = backoffMs * 2 ** n * (0.5 + random() * 0.5);
          if (result.retryAfterMs !== undefined) delay = Math.max(delay, result.retryAfterMs);
        }
        const tooLong = delay > MAX_RETRY_AFTER_MS;
        if (result.retryAfterMs !== undefined && result.retryAfterMs <= MAX_RETRY_AFTER_MS)
          onRetryAfter?.(result.retryAfterMs);
        log.warn(
          {
            id,
            attempt: n + 1,
            outcome: result.outcome,
            durationMs: Math.round(seconds * 1000),
            retryInMs: willRetry && !tooLong ? Math.round(delay) : undefined,
            err: result.error.message,
          },
          'kentik call failed',
        );
        if (!willRetry || tooLong) {
          metrics.upstreamFetches.inc({ outcome: result.outcome });
          const e = result.error;
          const attempts = n + 1;
          const suffix = ` (after ${attempts} attempt${attempts === 1 ? '' : 's'} in ${((performance.now() - started) / 1000).toFixed(1)} s)`;
          if (e instanceof KentikApiError && tooLong) {
            throw new KentikApiError(
              e.upstreamStatus,
              `${e.message} Kentik asked to retry after ${Math.round(delay / 1000)} s.${suffix}`,
            );
          }
          if (e instanceof KentikApiError)
            throw new KentikApiError(e.upstreamStatus, e.message + suffix);
          if (e instanceof KentikUnavailableError)
            throw new KentikUnavailableError(e.message + suffix, { cause: e.cause });
          throw e;
        }
        await sleep(delay, undefined, { signal });
      }
    },
    async close() {
      await agent.close();
    },
  };
}

async function readLimited(
  body: AsyncIterable<Buffer> & { destroy(): unknown },
  max: number,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > max) {
      body.destroy();
      throw new TooLargeError();
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Kentik's error bodies are JSON with a human-readable message under one of a few keys. */
function upstreamMessage(text: string, status: number): string {
  let message: string | undefined;
  try {
    const parsed = JSON.parse(text) as Record<string, unknown>;
    for (const key of ['error', 'message', 'msg', 'detail']) {
      const v = parsed?.[key];
      if (typeof v === 'string' && v.trim()) {
        message = v.trim();
        break;
      }
    }
  } catch {
    // not JSON: fall through to the raw text
  }
  message ??= text.trim() || `HTTP ${status} with an empty body`;
  if (message.length > MAX_MESSAGE_CHARS) message = message.slice(0, MAX_MESSAGE_CHARS) + '…';
  return `Kentik API answered ${status}: ${message}`;
}

function describeNetworkError(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e.cause?.code ?? e.code;
  const msg = e.cause?.message ?? e.message ?? String(err);
  return code ? `${code} (${msg})` : msg;
}
