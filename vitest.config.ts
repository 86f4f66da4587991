import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // In CI, a service the tests need that is missing fails the run instead of skipping tests.
    globalSetup: ['test/helpers/ci-services.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests start real brokers, databases and processes; two cores run two files at a time.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
