#!/usr/bin/env node
// `npm run build`: the service as one ES module bundle, dist/main.js (plus chunks of what only
// some starts load, such as the Redis mode), behind dist/server.js, a launcher that turns on
// Node's module compile cache first. Start-up is mostly module loading: one file instead of a few
// hundred saves resolving, reading and compiling them one by one (docs/performance.md).
// Types are checked by `npm run typecheck`, not here. `--no-sourcemap` for the container image.
import { rmSync, writeFileSync } from 'node:fs';
import { build } from 'esbuild';

const root = new URL('../', import.meta.url);
const dist = new URL('dist/', root);
rmSync(dist, { recursive: true, force: true });

await build({
  absWorkingDir: root.pathname,
  entryPoints: { main: 'src/server.ts' },
  outdir: 'dist',
  // Lazy parts (Redis mode) in chunks of their own, next to main.js: src/paths.ts finds the
  // project root as `..` of the module it is bundled into, which must sit directly in dist/.
  splitting: true,
  chunkNames: '[name]-[hash]',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  sourcemap: process.argv.includes('--no-sourcemap') ? false : 'linked',
  legalComments: 'none',
  logLevel: 'warning',
  // Packages that find files next to their own code at run time (pino's transport workers,
  // Swagger UI's static files) or that only a developer's terminal uses stay in node_modules.
  external: ['pino', 'pino-pretty', '@fastify/swagger-ui'],
  // Bundled CommonJS packages call require() for Node built-ins and the external packages.
  banner: {
    js: "import { createRequire as __kicCreateRequire } from 'node:module'; const require = __kicCreateRequire(import.meta.url);",
  },
});

// The launcher: the compile cache must be on before the bundle is loaded, so it is a module of its
// own. Where the cache cannot be written (a read-only file system) Node simply goes without it.
// It also loads node:http before the bundle. Measured on Node 24 (docs/performance.md, "Hot GET"):
// when node:http is first loaded as part of the bundle's module graph, every later
// process.nextTick builds its queue entry through V8's slow runtime path (map transitions and
// migrations, Runtime_DefineKeyedOwnPropertyInLiteral), some 4 µs of each hot image GET; loaded
// first, from here or from a --import preload, it never does. Why is inside V8; the hot GET
// benchmark's CPU per request shows it if it comes back.
writeFileSync(
  new URL('server.js', dist),
  `#!/usr/bin/env node
import 'node:http';
import module from 'node:module';
module.enableCompileCache?.();
await import('./main.js');
`,
  { mode: 0o755 },
);
