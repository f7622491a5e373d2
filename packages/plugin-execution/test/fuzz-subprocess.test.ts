import { describeFuzz } from '@kb-labs/plugin-execution-conformance';
import { createExecutionBackend } from '@kb-labs/plugin-execution';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { describe } from 'vitest';

// Random interleavings of executions (crashing ones too), plugin changes, aborts, stats(),
// health() and shutdown() with a warm spare, without and with the sandbox (packages/conformance/src/fuzz).
describe('fuzz: subprocess', () => {
  describeFuzz('subprocess', (options) => new SubprocessBackend({ ...options, prespawn: 1, sandbox: 'off' }), { isolatesCrashes: true }, [1, 2]);
  describeFuzz('lazy subprocess', (options) => createExecutionBackend({ type: 'subprocess', prespawn: 1, sandbox: 'off', ...options }), { isolatesCrashes: true }, [3, 4]);
  describeFuzz('sandboxed subprocess', (options) => new SubprocessBackend({ ...options, prespawn: 1, sandbox: 'required' }), { isolatesCrashes: true }, [5, 6]);
  describeFuzz('lazy sandboxed subprocess', (options) => createExecutionBackend({ type: 'subprocess', prespawn: 1, sandbox: 'required', ...options }), { isolatesCrashes: true }, [7, 8]);
});
