import type { ExecutionWorker, ExecutionWorkerOptions, QueueServerError as QueueServerErrorClass } from '@kb-labs/plugin-execution-queue';
import { loadStartExecutionWorker } from './backend-loaders.js';

export type { ExecutionWorker, ExecutionWorkerOptions, LocalBackendOptions, LocalBackendType, QueueServerProblem } from '@kb-labs/plugin-execution-queue';

/**
 * What `startExecutionWorker` rejects with when the NATS server refuses the worker: here a type
 * only (a class re-exported by name would load the queue package with the umbrella, and a
 * type-only re-export of a class compiled as a value the bundle does not have). Tell it by
 * `error.name === 'QueueServerError'` and its `problem`, or import the class from
 * `@kb-labs/plugin-execution-queue` for `instanceof`.
 */
export type QueueServerError = QueueServerErrorClass;

/**
 * Start a queue worker on this machine (the queue package's `startExecutionWorker`): it takes
 * executions of its pool from NATS JetStream and runs them on its local backend. The queue
 * package, and the NATS client, load on this first call, not when the umbrella is imported.
 */
export async function startExecutionWorker(options: ExecutionWorkerOptions): Promise<ExecutionWorker> {
  return (await loadStartExecutionWorker())(options);
}
