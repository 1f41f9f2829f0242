import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import type { ImageEntry } from '../domain/entry.ts';
import type { ImageCache, Lookup } from '../cache/image-cache.ts';
import { parseId } from '../domain/ids.ts';
import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import { writeImage } from './image-headers.ts';
import { IMAGE_PRODUCES, imageResponses } from './image-response.ts';
import { errorResponse } from './schemas.ts';

const notFound = (id: string, why: string): AppError =>
  new AppError(
    404,
    'Not found',
    `Image ${id} ${why}. POST the query to /requests again for a new id.`,
    ['path', 'id'],
  );

export const imageRoutes: FastifyPluginAsyncTypebox<{ cache: ImageCache; config: Config }> = async (
  app,
  { cache, config },
) => {
  const waitSeconds = Math.ceil(config.entryWaitTimeoutMs / 1000);

  app.get(
    '/image/:id',
    {
      schema: {
        summary: 'Get a chart image',
        description:
          'Serves the image for an id from POST /requests. If it is still being fetched, the request waits ' +
          `(up to ENTRY_WAIT_TIMEOUT, now ${waitSeconds} s) and answers 504 with Retry-After if it is still pending then. ` +
          "If Kentik answered with an error, that error is served with Kentik's status code until the id expires.",
        tags: ['images'],
        params: Type.Object({
          id: Type.String({ description: 'Image id, <sha256>_<expiry epoch seconds>' }),
        }),
        headers: Type.Object({ 'if-none-match': Type.Optional(Type.String()) }),
        produces: IMAGE_PRODUCES,
        response: {
          ...imageResponses(
            'The image (PNG, JPEG, SVG or PDF), with ETag, Cache-Control and Expires',
          ),
          '4XX': errorResponse(
            "Unknown, malformed or expired id (404), or Kentik's own error for this query (400, 401, 403, 429…)",
          ),
          502: errorResponse('Kentik answered with something that is not an image'),
          503: errorResponse('The service is shutting down; retry'),
          504: errorResponse(
            'Kentik did not answer in time, or the image is still pending after ENTRY_WAIT_TIMEOUT',
          ),
          507: errorResponse('The image could not be stored (disk full)'),
          '5XX': errorResponse("Kentik's own server error for this query"),
        },
      },
    },
    (request, reply) => {
      const { id } = request.params;
      // A cached image held in memory is answered synchronously: no promise, no microtask.
      const hot = cache.lookupHot(id);
      if (hot) return void sendImage(reply, id, hot.entry, hot.bytes);
      return serve(reply, id);
    },
  );

  async function serve(reply: FastifyReply, id: string): Promise<FastifyReply> {
    if (!parseId(id)) {
      if (parseId(id.toLowerCase()))
        throw notFound(
          id.slice(0, 100),
          'has uppercase hex digits, but ids are lowercase and case-sensitive: use the id exactly as POST /requests returned it',
        );
      throw notFound(
        id.slice(0, 100),
        'is not a valid image id (expected <64 lowercase hex digits>_<epoch seconds>, as POST /requests returns it)',
      );
    }
    let found = await cache.lookup(id);
    if (found.kind === 'pending') {
      // Event-driven wait; the client going away ends it at once and leaves nothing behind.
      const outcome = await cache.waitFor(id, config.entryWaitTimeoutMs, reply.raw);
      if (outcome === 'aborted') return reply; // nobody to answer
      // A settle reads the image into memory before it wakes anyone: answered at once, each woken
      // GET writes in its first step (a fan-in wakes hundreds; another async lookup each would
      // make the first answer wait for all of them).
      const hot = cache.lookupHot(id);
      if (hot) return sendImage(reply, id, hot.entry, hot.bytes);
      found = await cache.lookup(id);
    }
    return send(reply, id, found);
  }

  function send(reply: FastifyReply, id: string, found: Lookup): FastifyReply {
    switch (found.kind) {
      case 'missing':
        throw notFound(
          id,
          found.reason === 'expired'
            ? 'has expired'
            : found.reason === 'lost'
              ? 'is no longer available (its stored data was lost or damaged)'
              : 'is unknown (never issued here, expired, or evicted)',
        );
      case 'pending':
        if (cache.closing) {
          throw new AppError(
            503,
            'Service unavailable',
            'The service is restarting; the image is still being fetched. Retry in a few seconds.',
            ['path', 'id'],
            {
              headers: { 'retry-after': '5' },
            },
          );
        }
        throw new AppError(
          504,
          'Image pending',
          `The image is still being fetched from Kentik after waiting ${waitSeconds} s. Retry the same URL later; the id stays valid.`,
          ['path', 'id'],
          { headers: { 'retry-after': '5' } },
        );
      case 'error':
        reply.header('cache-control', 'no-store');
        throw new AppError(found.entry.status, found.entry.errorType, found.entry.message, [
          'upstream',
        ]);
      case 'image':
        return sendImage(reply, id, found.entry, found.bytes);
    }
  }

  function sendImage(
    reply: FastifyReply,
    id: string,
    entry: ImageEntry,
    bytes: Buffer,
  ): FastifyReply {
    // Written on the raw response, as the hot path does (image-headers.ts); onResponse still runs.
    reply.hijack();
    const { method, headers } = reply.request;
    writeImage(
      reply.raw,
      { method, ifNoneMatch: headers['if-none-match'] },
      { entry, id, bytes },
      Date.now(),
    );
    return reply;
  }
};
