import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Each worker process is reused from file to file instead of starting afresh: a new process per
    // file re-imported node-opcua and the rest of the gateway for each of the 161 files (110 s of
    // 631 s on a machine with two CPU hogs). Files must not rely on fresh module state — none mocks
    // modules or globals, and test/unit/test-health.test.ts keeps it so.
    isolate: false,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
