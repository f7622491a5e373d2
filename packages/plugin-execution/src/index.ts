export * from '@kb-labs/plugin-execution-core';
export * from '@kb-labs/plugin-execution-channels';
// Shadows core's createExecutionBackend (the same function, its options typed per backend here).
export { createExecutionBackend, type CreateExecutionBackendOptions } from './create-execution-backend.js';
export { startExecutionWorker, type ExecutionWorker, type ExecutionWorkerOptions, type LocalBackendOptions, type LocalBackendType, type QueueServerError, type QueueServerProblem } from './start-execution-worker.js';
// The option types `CreateExecutionBackendOptions` and `ExecutionWorkerOptions` are made of, by
// name (a host library's declarations name them; under pnpm it could not reach the backends'
// packages for them). Types only: no backend package loads with the umbrella.
export type { InProcessBackendOptions } from '@kb-labs/plugin-execution-in-process';
export type { WorkerPoolBackendOptions } from '@kb-labs/plugin-execution-worker-pool';
export type { SandboxMode, SandboxUser, SubprocessBackendOptions } from '@kb-labs/plugin-execution-subprocess';
export type { NatsConnectionOptions, QueueBackendOptions } from '@kb-labs/plugin-execution-queue';
