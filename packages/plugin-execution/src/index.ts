export * from '@kb-labs/plugin-execution-core';
export * from '@kb-labs/plugin-execution-channels';
// Shadows core's createExecutionBackend (the same function, its options typed per backend here).
export { createExecutionBackend, type CreateExecutionBackendOptions } from './create-execution-backend.js';
export { startExecutionWorker, type ExecutionWorker, type ExecutionWorkerOptions, type LocalBackendOptions, type QueueServerError, type QueueServerProblem } from './start-execution-worker.js';
