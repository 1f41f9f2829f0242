import type { ImageCache } from '../cache/image-cache.ts';
import type { Activity } from '../dashboard/activity.ts';
import type { FrontHandler } from '../http/limits.ts';
import type { Metrics } from '../metrics.ts';
import type { HotRequestLog } from './hot-request-log.ts';
import { writeImage } from './image-headers.ts';

const PREFIX = '/image/';
const ROUTE = '/image/:id';

/**
 * The lean path of GET and HEAD /image/{id} for an image held in memory: a dashboard wall asks for
 * the same chart thousands of times a second, and fastify's routing, hooks, reply object and log
 * line per request cost more than sending the bytes. It runs on the raw request, before fastify
 * (see serverOptions in src/http/limits.ts), and answers only when everything is simple:
 *   - the path is exactly /image/<id> (no query string, no %-escapes: anything else goes to the
 *     route, which decodes and validates), and the cache holds the image in memory (lookupHot);
 *   - the service is not closing (fastify answers 503 then);
 *   - not a HEAD with If-None-Match (rare: the route answers it, with the same writer, and this
 *     path keeps no counter or summary entry for a HEAD 304).
 * Everything else falls through to fastify unchanged. What the route does for a hot image it does
 * too: the same headers (image-headers.ts), 304 on a matching ETag, no body for HEAD, the HTTP
 * request counter and duration histogram with the route's labels, the image lookup and memory-hit
 * counters (in lookupHot), and the dashboard's served count. Only the log differs: one summary line
 * per interval instead of one per request (hot-request-log.ts, README "Logging"). Server-level
 * limits (connection caps, timeouts) apply before any handler; GET /image has no access control
 * or rate limit (src/http/limits.ts).
 */
export function hotImagePath(deps: {
  cache: ImageCache;
  metrics: Metrics;
  activity: Activity;
  log: HotRequestLog;
}): FrontHandler {
  const { cache, metrics, activity, log } = deps;
  // Children bound to their labels once: no label object per request.
  const count = {
    get200: metrics.httpRequests.labels(ROUTE, 'GET', '200'),
    get304: metrics.httpRequests.labels(ROUTE, 'GET', '304'),
    head200: metrics.httpRequests.labels(ROUTE, 'HEAD', '200'),
  };
  const duration = metrics.httpDuration.labels(ROUTE);

  return (req, res) => {
    const method = req.method;
    const head = method === 'HEAD';
    if (!head && method !== 'GET') return false;
    const url = req.url ?? '';
    if (!url.startsWith(PREFIX) || cache.closing) return false;
    const condition = ifNoneMatch(req.rawHeaders);
    if (head && condition !== undefined) return false;
    const start = performance.now();
    // Ids held in memory are plain (hex, '_', digits): a query string or escape never matches.
    const id = url.slice(PREFIX.length);
    const hot = cache.lookupHot(id);
    if (!hot) return false;

    const status = writeImage(
      res,
      { method, ifNoneMatch: condition },
      { entry: hot.entry, id, bytes: hot.bytes },
      Date.now(),
    );
    (status === 304 ? count.get304 : head ? count.head200 : count.get200).inc();
    // Until the answer is handed to the socket (the route measures until it is flushed).
    const ms = performance.now() - start;
    duration.observe(ms / 1000);
    activity.served(id);
    log.add(method, status, ms);
    return true;
  };
}

/**
 * If-None-Match as `req.headers` would give it (several joined with ", "), read from the raw list.
 * `req.headers` is built on first access, a property per header with names the parser just made;
 * a profile of the hot path showed that object costing more than everything else we do per
 * request, and this path needs one header.
 */
export function ifNoneMatch(raw: readonly string[]): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 13 && name.toLowerCase() === 'if-none-match')
      value = value === undefined ? raw[i + 1]! : `${value}, ${raw[i + 1]!}`;
  }
  return value;
}
