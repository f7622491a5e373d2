export * from '@kb-labs/plugin-execution-core';
export * from '@kb-labs/plugin-execution-channels';
export { createExecutionBackend, type CreateExecutionBackendOptions, type LazyExecutionBackend } from './create-execution-backend.js';
export { BACKEND_PACKAGES } from './backend-loaders.js';
export { startExecutionWorker, type ExecutionWorker, type ExecutionWorkerOptions, type LocalBackendOptions } from './start-execution-worker.js';
