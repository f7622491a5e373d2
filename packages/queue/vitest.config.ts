import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One nats-server for the package's tests: test/global-setup.ts provides its URL as `natsUrl`
    // (tests that restart or stop a server start one of their own).
    globalSetup: ['./test/global-setup.ts'],
    // Three files at a time, whatever the machine's cores: every file starts worker processes (and
    // they children), but mostly waits on timers, heartbeats and the broker (a tenth of a core each,
    // measured on 2 cores), so three side by side keep the heartbeats in time where one at a time
    // took four times as long.
    fileParallelism: true,
    maxWorkers: 3,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
