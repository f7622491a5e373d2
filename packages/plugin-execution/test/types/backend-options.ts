// Compile-time checks of createExecutionBackend's options (types.test.ts runs `tsc --noEmit` on
// this folder): options are typed per `type`, so a misspelt option does not compile.
import { createExecutionBackend } from '@kb-labs/plugin-execution';

createExecutionBackend({ type: 'worker-pool', maxThreads: 4, defaultTimeoutMs: 1000 });
createExecutionBackend({ type: 'subprocess', prespawn: 1, sandbox: 'required' });
createExecutionBackend({ plugins: ['./plugins/a'], maxQueue: 10 });

// @ts-expect-error maxThread is not an option (maxThreads is)
createExecutionBackend({ type: 'worker-pool', maxThread: 4 });
// @ts-expect-error prespwn is not an option (prespawn is)
createExecutionBackend({ type: 'subprocess', prespwn: 1 });
// @ts-expect-error defaultTimeoutMS is not an option (defaultTimeoutMs is)
createExecutionBackend({ type: 'in-process', defaultTimeoutMS: 5 });
// @ts-expect-error prespawn belongs to the subprocess backend, not worker-pool
createExecutionBackend({ type: 'worker-pool', prespawn: 1 });
// @ts-expect-error sandbox takes one of its modes
createExecutionBackend({ type: 'subprocess', sandbox: 'sometimes' });
// @ts-expect-error an unknown backend type
createExecutionBackend({ type: 'docker' });

// startExecutionWorker's local backend is typed per `type` too, less what the worker sets itself.
import { startExecutionWorker } from '@kb-labs/plugin-execution';

void startExecutionWorker({ plugins: ['./plugins/a'], backend: { type: 'subprocess', prespawn: 1, sandbox: 'required', permissions: { network: false } } });
void startExecutionWorker({ plugins: ['./plugins/a'], backend: { type: 'worker-pool', maxThreads: 2 }, concurrency: 2 });
// @ts-expect-error maxThread is not an option of the worker-pool backend (maxThreads is)
void startExecutionWorker({ plugins: ['./plugins/a'], backend: { type: 'worker-pool', maxThread: 2 } });
// @ts-expect-error prespawn belongs to the subprocess backend
void startExecutionWorker({ plugins: ['./plugins/a'], backend: { type: 'in-process', prespawn: 1 } });
// @ts-expect-error maxConcurrency is set by the worker (its `concurrency` option)
void startExecutionWorker({ plugins: ['./plugins/a'], backend: { type: 'worker-pool', maxConcurrency: 2 } });
// @ts-expect-error a worker runs on a local backend, not on another queue
void startExecutionWorker({ plugins: ['./plugins/a'], backend: { type: 'queue' } });
