import { describeConformance } from '@kb-labs/plugin-execution-conformance';
import { WorkerPoolBackend } from '@kb-labs/plugin-execution-worker-pool';

// Threads can be terminated and replaced, and each execution starts from clean globals: the
// whole suite applies. Two threads, as on a small CI machine.
describeConformance('worker-pool', (options) => new WorkerPoolBackend({ maxThreads: 2, ...options }), {
  preemptsSyncCode: true,
  isolatesCrashes: true,
  isolatesGlobals: true,
  sharesMemory: true,
});
