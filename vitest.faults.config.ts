import { defineConfig } from 'vitest/config';

/** `npm run test:faults`: the long fault variants (60 s partition, 2 min flapping, 30 s SIGSTOP of a limiter node, a kill -9 loop, jittered latency), one at a time. */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 1,
    retry: 0,
    allowOnly: false,
  },
});
