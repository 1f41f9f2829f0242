#!/usr/bin/env node
// `npm start`: runs the compiled service, or says how to get it instead of a MODULE_NOT_FOUND stack.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/server.js', import.meta.url);
if (!existsSync(entry)) {
  console.error(
    'dist/server.js does not exist yet: run `npm run build` first, then `npm start`.\n' +
      'To run from source without building, use `npm run dev` (or `npm run demo` for a demo with no configuration).',
  );
  process.exit(1);
}
await import(entry.href);
