import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests start real brokers, databases and processes; two cores run two files at a time.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
