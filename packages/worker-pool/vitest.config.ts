import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: { name: 'worker-pool', include: ['test/**/*.test.ts'], exclude: ['test/hostile-matrix.test.ts'] },
      },
      {
        // The matrix's protocol-garbage handler also writes junk to file descriptors 3 and 4.
        // From a worker thread those are the host's own: in vitest's default forks pool fd 3 is
        // the fork's IPC socket, and the junk kills the test runner (that a thread can write to
        // the host's descriptors is documented as not defended). Threads pool: fds 3/4 are
        // libuv internals there, and the writes fail harmlessly.
        extends: true,
        test: { name: 'hostile-matrix', include: ['test/hostile-matrix.test.ts'], pool: 'threads' },
      },
    ],
  },
});
