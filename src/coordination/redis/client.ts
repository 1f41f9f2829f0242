import { createHash } from 'node:crypto';
import { createClient, RESP_TYPES } from 'redis';
import type { Secret } from '../../secret.ts';

/**
 * The only file that knows the Redis client library (node-redis): switching clients means
 * rewriting this file. Everything else sees RedisLink.
 *
 * No offline queue: while Redis is unreachable every command fails at once (or after
 * COMMAND_TIMEOUT_MS if Redis stopped answering), so callers answer 503 instead of hanging.
 * The client reconnects on its own, and the subscriber resubscribes on its own; `onState`
 * says when either went down or came back, so the caller can re-sync.
 */
export interface RedisLink {
  connect(): Promise<void>;
  /** Runs a Lua script (EVALSHA, loading it once if Redis does not know it). */
  evalScript(script: LuaScript, keys: string[], args: Array<string | Buffer>): Promise<unknown>;
  /** Any command; bulk replies as strings. */
  command(args: Array<string | Buffer>): Promise<unknown>;
  /** A command whose bulk reply is binary (image bytes). */
  commandBuffer(args: string[]): Promise<Buffer | null>;
  subscribe(channel: string, onMessage: (message: string) => void): Promise<void>;
  /** `up` false when the command or subscriber connection is lost, true when both are back. */
  onState(listener: (up: boolean) => void): void;
  readonly ready: boolean;
  close(): Promise<void>;
}

export interface LuaScript {
  source: string;
  sha: string;
}

export function luaScript(source: string): LuaScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * A command is failed when Redis has answered nothing at all for this long: callers then answer
 * 503 in time. While other replies keep arriving (Redis is up, the replica or Redis is merely
 * busy) a command may wait up to COMMAND_BUSY_LIMIT_MS before it is given up.
 */
const COMMAND_TIMEOUT_MS = 800;
const COMMAND_BUSY_LIMIT_MS = 5000;
/** A deadline timer that fires this much late means our own event loop was held (see withTimeout). */
const LOOP_HELD_MS = 100;
const CONNECT_TIMEOUT_MS = 1000;

export class RedisUnavailable extends Error {
  override name = 'RedisUnavailable';
}

export function createRedisLink(url: Secret, onError: (message: string) => void): RedisLink {
  const options = {
    url: url.reveal(),
    disableOfflineQueue: true,
    // Detects a half-open connection (Redis paused or a network cut) without waiting for TCP.
    pingInterval: 1000,
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      // Quick first retries, then once a second with jitter, for as long as it takes.
      reconnectStrategy: (retries: number) =>
        Math.min(50 * 2 ** retries, 1000) + Math.floor(Math.random() * 100),
    },
  };
  const client = createClient(options);
  const subscriber = client.duplicate();
  const binary = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };
  const listeners: Array<(up: boolean) => void> = [];
  let up = false;
  const setState = (): void => {
    const now = client.isReady && subscriber.isReady;
    if (now === up) return;
    up = now;
    for (const l of listeners) l(up);
  };
  // Errors are reported without the URL: node-redis messages name host and port, never the
  // password, but scrub anyway.
  const report = (err: unknown): void => onError(url.scrub(String((err as Error)?.message ?? err)));
  for (const c of [client, subscriber]) {
    c.on('error', report);
    c.on('ready', setState);
    c.on('end', setState);
    c.on('reconnecting', setState);
  }

  // When Redis last answered anything: a command that is late while other replies keep arriving
  // is waiting behind load (ours or Redis's), not on a Redis that went away.
  let lastReplyAt = 0;
  const withTimeout = async <T>(run: () => Promise<T>): Promise<T> => {
    if (!client.isReady) throw new RedisUnavailable('not connected to Redis');
    const sentAt = performance.now();
    // When the deadline timer is due; a timer that fires well after it saw our own loop held.
    let dueAt = sentAt + COMMAND_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    try {
      return await Promise.race([
        run().then((value) => {
          settled = true;
          lastReplyAt = performance.now();
          return value;
        }),
        new Promise<never>((_, reject) => {
          const check = (): void => {
            // Timers run before pending socket reads in Node's event loop: after the loop was
            // blocked, the answer may already be waiting to be read. Decide only after I/O has
            // had its turn (setImmediate runs after the poll phase).
            const firedAt = performance.now();
            setImmediate(() => {
              if (settled) return;
              const now = performance.now();
              // The loop was held (a long synchronous task, a CPU-starved replica): the command
              // may have left only after it, since a client writes on a later tick, and Redis has
              // had no time to answer it. That time is ours, not Redis's: one more full window.
              if (firedAt - dueAt > LOOP_HELD_MS && now - sentAt < COMMAND_BUSY_LIMIT_MS) {
                dueAt = now + COMMAND_TIMEOUT_MS;
                timer = setTimeout(check, COMMAND_TIMEOUT_MS);
                return;
              }
              const quiet = now - Math.max(lastReplyAt, sentAt);
              if (quiet < COMMAND_TIMEOUT_MS && now - sentAt < COMMAND_BUSY_LIMIT_MS) {
                dueAt = now + COMMAND_TIMEOUT_MS - quiet;
                timer = setTimeout(check, COMMAND_TIMEOUT_MS - quiet);
                return;
              }
              reject(
                new RedisUnavailable(`no answer from Redis within ${Math.round(now - sentAt)} ms`),
              );
            });
          };
          timer = setTimeout(check, COMMAND_TIMEOUT_MS);
        }),
      ]);
    } catch (err) {
      if (err instanceof RedisUnavailable) throw err;
      // A Redis error reply (a bug in a script, OOM) is not "unreachable": keep its text.
      if (
        (err as Error)?.constructor?.name?.includes('ErrorReply') ||
        /^ERR|^OOM|^NOSCRIPT|^WRONGTYPE/.test((err as Error).message)
      ) {
        lastReplyAt = performance.now();
        throw new Error(`Redis: ${url.scrub((err as Error).message)}`, { cause: err });
      }
      throw new RedisUnavailable(url.scrub((err as Error).message ?? String(err)), { cause: err });
    } finally {
      settled = true;
      clearTimeout(timer);
    }
  };

  return {
    async connect() {
      try {
        await Promise.all([client.connect(), subscriber.connect()]);
      } catch (err) {
        throw new RedisUnavailable(url.scrub((err as Error).message), { cause: err });
      }
      setState();
    },
    evalScript(script, keys, args) {
      const tail = [String(keys.length), ...keys, ...args];
      return withTimeout(async () => {
        try {
          return await client.sendCommand(['EVALSHA', script.sha, ...tail]);
        } catch (err) {
          if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err;
          return await client.sendCommand(['EVAL', script.source, ...tail]);
        }
      });
    },
    command(args) {
      return withTimeout(() => client.sendCommand(args));
    },
    commandBuffer(args) {
      return withTimeout(() => client.sendCommand(args, binary) as Promise<Buffer | null>);
    },
    async subscribe(channel, onMessage) {
      await subscriber.subscribe(channel, (message: string) => onMessage(message));
    },
    onState(listener) {
      listeners.push(listener);
    },
    get ready() {
      return client.isReady && subscriber.isReady;
    },
    async close() {
      for (const c of [client, subscriber]) {
        try {
          if (c.isReady) await c.close();
          else c.destroy();
        } catch {
          c.destroy();
        }
      }
    },
  };
}
