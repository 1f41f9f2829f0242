import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GateProxy {
  /** Base URL to use instead of the target's (same path). */
  url: string;
  /** From now on, requests wait at the gate. */
  hold(): void;
  /** Lets every waiting request (and later ones) through. */
  release(): void;
  /** Resolves once `n` requests are waiting at the gate. */
  waiting(n: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * An HTTP proxy in front of the simulator that can hold calls until the test says so: a pending
 * entry then stays pending exactly as long as the test needs, with no timing guesses.
 */
export async function startGateProxy(target: string): Promise<GateProxy> {
  const base = new URL(target);
  let held = false;
  let queue: Array<() => void> = [];
  const watchers = new Set<() => void>();

  const forward = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (held) {
      await new Promise<void>((resolve) => {
        queue.push(resolve);
        for (const w of watchers) w();
      });
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers[k] = v;
    try {
      const answer = await fetch(new URL(req.url ?? '/', base.origin), {
        method: req.method,
        headers,
        body: chunks.length > 0 ? Buffer.concat(chunks) : undefined,
      });
      const body = Buffer.from(await answer.arrayBuffer());
      res.writeHead(answer.status, {
        'content-type': answer.headers.get('content-type') ?? 'application/octet-stream',
      });
      res.end(body);
    } catch {
      res.destroy();
    }
  };

  const server = createServer((req, res) => void forward(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${base.pathname.replace(/\/$/, '')}`,
    hold: () => {
      held = true;
    },
    release: () => {
      held = false;
      const q = queue;
      queue = [];
      for (const r of q) r();
    },
    waiting: (n) =>
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (queue.length >= n) {
            watchers.delete(check);
            resolve();
          }
        };
        watchers.add(check);
        check();
      }),
    close: async () => {
      held = false;
      for (const r of queue) r();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
