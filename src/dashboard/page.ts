import { readFileSync } from 'node:fs';
import type { FastifyPluginAsync } from 'fastify';
import { ROOT_URL } from '../paths.ts';

/** The page's files: plain HTML, CSS and JS, served as they are (no build step, nothing remote). */
const STATIC_DIR = new URL('assets/dashboard/', ROOT_URL);

/**
 * Only our own origin, no inline script or style, no plugins, no framing. Images come from
 * /image on the same origin; the event stream and JSON from /dashboard/api.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** GET / and the page's assets. Read once at start: they are a few KB and never change while running. */
export const dashboardPage: FastifyPluginAsync = async (app) => {
  for (const [url, { file, type }] of Object.entries(FILES)) {
    const body = readFileSync(new URL(file, STATIC_DIR));
    app.get(
      url,
      {
        schema:
          url === '/'
            ? {
                summary: 'The dashboard (HTML)',
                description:
                  'A page for people: the cached charts, their queries in words, failures, live updates, share links and a form for new charts.',
                tags: ['dashboard'],
                produces: ['text/html'],
              }
            : { hide: true },
      },
      async (_request, reply) =>
        reply
          .type(type)
          .headers({
            'content-security-policy': DASHBOARD_CSP,
            'x-content-type-options': 'nosniff',
            'referrer-policy': 'no-referrer',
            // Small and changed only by an upgrade: revalidate, so a new version shows at once.
            'cache-control': 'no-cache',
          })
          .send(body),
    );
  }
};
