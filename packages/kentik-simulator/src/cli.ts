#!/usr/bin/env node
/**
 * kentik-simulator: run the Kentik API simulator from the command line. `--help` lists every
 * flag and its environment variable. Prints one start line (never the token); SIGINT/SIGTERM
 * close it and exit 0.
 */
import { faultSummary, parseCli, readDotEnv, usage } from './args.ts';
import { startSimulator } from './server.ts';

async function main(): Promise<void> {
  let dotEnv: Record<string, string> = {};
  try {
    dotEnv = readDotEnv();
  } catch (e) {
    process.stderr.write(`kentik-simulator: ignoring unreadable .env: ${(e as Error).message}\n`);
  }
  const parsed = parseCli(process.argv.slice(2), { ...dotEnv, ...process.env });
  if (parsed.kind === 'help') {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  if (parsed.kind === 'error') {
    process.stderr.write(`kentik-simulator: ${parsed.message}\nRun with --help for usage.\n`);
    process.exitCode = 2;
    return;
  }
  const sim = await startSimulator(parsed.options);
  process.stdout.write(
    `Kentik API simulator listening at ${sim.url} (email ${sim.email})${faultSummary(parsed.options.faults ?? {})}\n`,
  );
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    sim.close().then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`kentik-simulator: error while closing: ${(e as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`kentik-simulator: ${(e as Error).message}\n`);
  process.exit(1);
});
