import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Name of the lock file in CACHE_PATH. */
export const LOCK_FILE = '.lock';
/** How often the holder touches the lock; a lock untouched for STALE_AFTER_MS is abandoned. */
const HEARTBEAT_MS = 5_000;
const STALE_AFTER_MS = 30_000;

export interface LockOwner {
  pid: number;
  host: string;
  startedAt: string;
  /** Random per process: tells our own lock from one a previous process with our pid left. */
  nonce: string;
}

/** Another live process holds CACHE_PATH. The message names it and says what to do. */
export class CachePathLockedError extends Error {
  constructor(
    readonly cachePath: string,
    readonly owner: LockOwner,
    ageMs: number,
  ) {
    super(
      `CACHE_PATH ${cachePath} is in use by another kentik-image-cache process ` +
        `(pid ${owner.pid} on host ${owner.host}, started ${owner.startedAt}, alive ${Math.round(ageMs / 1000)} s ago). ` +
        "Two processes on one directory delete each other's files. Stop the other process, give each one its own CACHE_PATH, " +
        'or run several replicas with CACHE_BACKEND=redis. ' +
        `If that process is gone, this lock is taken over ${STALE_AFTER_MS / 1000} s after its last heartbeat, or delete ${path.join(cachePath, LOCK_FILE)}.`,
    );
    this.name = 'CachePathLockedError';
  }
}

export interface DirectoryLock {
  readonly owner: LockOwner;
  release(): void;
}

/**
 * An exclusive lock on a cache directory for the filesystem backend. Node has no flock, so it is a
 * file created with O_EXCL that names its owner and is touched every few seconds. A lock is stale,
 * and taken over, when its owner is on this host and its pid is gone (kill -9: taken over at once),
 * or when nobody touched it for STALE_AFTER_MS (another host or container sharing the volume).
 */
export async function acquireDirectoryLock(
  dir: string,
  now: () => number = Date.now,
): Promise<DirectoryLock> {
  const file = path.join(dir, LOCK_FILE);
  const owner: LockOwner = {
    pid: process.pid,
    host: os.hostname(),
    startedAt: new Date(now()).toISOString(),
    nonce: randomBytes(8).toString('hex'),
  };
  const text = JSON.stringify(owner) + '\n';

  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      try {
        writeSync(fd, text);
      } finally {
        closeSync(fd);
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 3) throw err;
    }
    const { holder, ageMs } = await readHolder(file, now);
    if (holder && !isStale(holder, ageMs)) throw new CachePathLockedError(dir, holder, ageMs);
    // Stale (or unreadable: a torn write of a crashed owner). Rename it aside first, so that of two
    // processes taking over at once only one removes it; the other then finds the winner's lock.
    const aside = `${file}.stale-${owner.nonce}`;
    try {
      renameSync(file, aside);
      unlinkSync(aside);
    } catch {
      // someone else took it over first: look again
    }
  }

  const heartbeat = setInterval(() => {
    void touch(file, text);
  }, HEARTBEAT_MS);
  heartbeat.unref();
  const onExit = (): void => release();
  process.once('exit', onExit);
  let released = false;
  function release(): void {
    if (released) return;
    released = true;
    clearInterval(heartbeat);
    process.off('exit', onExit);
    try {
      const current = JSON.parse(readFileSync(file, 'utf8')) as LockOwner;
      if (current.nonce === owner.nonce) unlinkSync(file);
    } catch {
      // gone already, or not ours any more
    }
  }
  return { owner, release };
}

async function readHolder(
  file: string,
  now: () => number,
): Promise<{ holder: LockOwner | undefined; ageMs: number }> {
  try {
    const [raw, stat] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file)]);
    const ageMs = Math.max(0, now() - stat.mtimeMs);
    try {
      const v = JSON.parse(raw) as LockOwner;
      if (typeof v.pid === 'number' && typeof v.host === 'string') return { holder: v, ageMs };
    } catch {
      // torn or foreign content
    }
    // Unreadable: stale only once nobody has touched it for a while (a writer may be mid-write).
    return {
      holder: ageMs > STALE_AFTER_MS ? undefined : { pid: 0, host: '?', startedAt: '?', nonce: '' },
      ageMs,
    };
  } catch {
    return { holder: undefined, ageMs: Infinity };
  }
}

function isStale(holder: LockOwner, ageMs: number): boolean {
  if (ageMs > STALE_AFTER_MS) return true;
  if (holder.host !== os.hostname()) return false;
  // Same host: a previous incarnation with our own pid (a container restarted as pid 1), or a pid
  // that no longer exists (killed with -9), never released it.
  if (holder.pid === process.pid) return true;
  return !pidAlive(holder.pid);
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Heartbeat: refresh the mtime; if the file vanished (CACHE_PATH recreated), write it again. */
async function touch(file: string, text: string): Promise<void> {
  const t = new Date();
  try {
    await fs.utimes(file, t, t);
  } catch {
    try {
      await fs.writeFile(file, text, { flag: 'wx', mode: 0o644 });
    } catch {
      // the directory is gone or unwritable: /readyz says so
    }
  }
}
