import { defineConfig } from 'vitest/config';

/** `npm run test:faults`: the long fault variants (60 s partition, 2 min flapping), one at a time. */
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
