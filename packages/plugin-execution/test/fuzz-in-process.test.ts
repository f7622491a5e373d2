import { describeFuzz } from '@kb-labs/plugin-execution-conformance';
import { createExecutionBackend } from '@kb-labs/plugin-execution';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe } from 'vitest';

// Random interleavings of executions, plugin changes, aborts, stats(), health() and shutdown()
// (packages/conformance/src/fuzz): a handful of fixed seeds here; FUZZ_RUNS=300 runs many.
describe('fuzz: in-process', () => {
  describeFuzz('in-process', (options) => new InProcessBackend(options), { isolatesCrashes: false }, [1, 2, 3, 4]);
  describeFuzz('lazy in-process', (options) => createExecutionBackend({ type: 'in-process', ...options }), { isolatesCrashes: false }, [5, 6, 7, 8]);
});
