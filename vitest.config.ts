import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'packages/*/src/**/*.test.ts'],
    // The Kentik token of every service a test starts must reach no log line and no answer.
    setupFiles: ['test/helpers/no-secret.setup.ts'],
    // A private TMPDIR per run; the run fails if a test leaves a kic-* directory in it.
    globalSetup: ['test/helpers/temp-guard.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real processes; two cores cannot run many at once.
    maxWorkers: 2,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});
