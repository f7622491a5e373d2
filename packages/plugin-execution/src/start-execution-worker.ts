import type { ExecutionWorker, ExecutionWorkerOptions } from '@kb-labs/plugin-execution-queue';
import { loadStartExecutionWorker } from './backend-loaders.js';

export type { ExecutionWorker, ExecutionWorkerOptions, LocalBackendOptions, LocalBackendType, QueueServerError, QueueServerProblem } from '@kb-labs/plugin-execution-queue';

/**
 * Start a queue worker on this machine (the queue package's `startExecutionWorker`): it takes
 * executions of its pool from NATS JetStream and runs them on its local backend. The queue
 * package, and the NATS client, load on this first call, not when the umbrella is imported.
 */
export async function startExecutionWorker(options: ExecutionWorkerOptions): Promise<ExecutionWorker> {
  return (await loadStartExecutionWorker())(options);
}
