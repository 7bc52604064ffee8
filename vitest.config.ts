import { defineConfig } from 'vitest/config';

export default defineConfig({
  // The package's own name resolves to its sources (package.json exports, condition "regionlimit-source").
  resolve: { conditions: ['regionlimit-source'] },
  ssr: { resolve: { conditions: ['regionlimit-source'], externalConditions: ['regionlimit-source'] } },
  test: {
    include: ['test/**/*.test.ts'],
    // The long fault variants run with `npm run test:faults` (vitest.faults.config.ts).
    exclude: ['test/faults/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration suites start their own nats-server processes; two workers suit a 2-core machine.
    pool: 'forks',
    maxWorkers: 2,
    retry: 0,
    allowOnly: false,
  },
});
