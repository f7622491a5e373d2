import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One nats-server for the package's tests: test/global-setup.ts provides its URL as `natsUrl`
    // (tests that restart or stop a server start one of their own).
    globalSetup: ['./test/global-setup.ts'],
    // Every file starts worker processes (and they children): one file at a time keeps a small
    // machine from starving their heartbeats.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
