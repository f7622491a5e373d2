import { describeFuzz } from '@kb-labs/plugin-execution-conformance';
import { createExecutionBackend } from '@kb-labs/plugin-execution';
import { WorkerPoolBackend } from '@kb-labs/plugin-execution-worker-pool';
import { describe } from 'vitest';

// Random interleavings of executions (crashing ones too), plugin changes, aborts, stats(),
// health() and shutdown() on 2 threads (packages/conformance/src/fuzz).
describe('fuzz: worker-pool', () => {
  describeFuzz('worker-pool', (options) => new WorkerPoolBackend({ ...options, maxThreads: 2 }), { isolatesCrashes: true }, [1, 2, 3, 4]);
  describeFuzz('lazy worker-pool', (options) => createExecutionBackend({ type: 'worker-pool', maxThreads: 2, ...options }), { isolatesCrashes: true }, [5, 6, 7, 8]);
});
