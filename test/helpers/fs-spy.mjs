// Preloaded into a service under test (`node --import <this file> …`): every path the process
// hands to `node:fs` or `node:fs/promises` is printed to stderr as
//   KIC_FS_SPY {"t": <epoch ms>, "fn": "open", "path": "/absolute/path"}
// so a test can check what the service touched on disk. Plain JavaScript, so it loads under tsx
// and under a compiled build alike. It only observes; every call goes through unchanged.
import { Buffer } from 'node:buffer';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';

const PATH_FUNCTIONS = [
  'access',
  'appendFile',
  'chmod',
  'chown',
  'copyFile',
  'cp',
  'exists',
  'lchown',
  'link',
  'lstat',
  'lutimes',
  'mkdir',
  'mkdtemp',
  'open',
  'opendir',
  'readdir',
  'readFile',
  'readlink',
  'realpath',
  'rename',
  'rm',
  'rmdir',
  'stat',
  'statfs',
  'symlink',
  'truncate',
  'unlink',
  'utimes',
  'writeFile',
];
const TWO_PATHS = new Set(['copyFile', 'cp', 'link', 'rename', 'symlink']);

function asPath(arg) {
  if (typeof arg === 'string') return arg;
  if (arg instanceof URL) return arg.protocol === 'file:' ? fileURLToPath(arg) : undefined;
  if (Buffer.isBuffer(arg)) return arg.toString('latin1');
  return undefined; // a file descriptor or a FileHandle: its path was recorded when it was opened
}

function record(fn, base, args) {
  for (const arg of args.slice(0, TWO_PATHS.has(base) ? 2 : 1)) {
    const p = asPath(arg);
    if (p !== undefined)
      process.stderr.write(
        `KIC_FS_SPY ${JSON.stringify({ t: Date.now(), fn, path: path.resolve(p) })}\n`,
      );
  }
}

function wrap(target, name, label, base = name) {
  const original = target[name];
  if (typeof original !== 'function') return;
  const wrapped = function (...args) {
    record(label, base, args);
    return original.apply(this, args);
  };
  // Keep what hangs off the original (realpath.native, promisify.custom, …).
  for (const key of Reflect.ownKeys(original)) {
    if (key === 'prototype' || key === 'length' || key === 'name') continue;
    Object.defineProperty(wrapped, key, Object.getOwnPropertyDescriptor(original, key));
  }
  target[name] = wrapped;
}

for (const name of PATH_FUNCTIONS) {
  wrap(fs, name, name);
  wrap(fs, `${name}Sync`, `${name}Sync`, name);
  wrap(fs.promises, name, `promises.${name}`, name);
}
for (const name of ['createReadStream', 'createWriteStream', 'watch', 'watchFile'])
  wrap(fs, name, name);
// Named ESM imports of node:fs (`import { openSync } from 'node:fs'`) see the wrapped functions too.
syncBuiltinESMExports();
