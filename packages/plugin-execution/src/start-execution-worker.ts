import type { InProcessBackendOptions } from '@kb-labs/plugin-execution-in-process';
import type { ExecutionWorker, ExecutionWorkerOptions as UntypedWorkerOptions, QueueServerError as QueueServerErrorClass, SetByTheWorker } from '@kb-labs/plugin-execution-queue';
import type { SubprocessBackendOptions } from '@kb-labs/plugin-execution-subprocess';
import type { WorkerPoolBackendOptions } from '@kb-labs/plugin-execution-worker-pool';
import { loadStartExecutionWorker } from './backend-loaders.js';

export type { ExecutionWorker, LocalBackendType, QueueServerProblem } from '@kb-labs/plugin-execution-queue';

/**
 * The local backend a worker runs executions on, typed per `type` as createExecutionBackend's
 * options are (a misspelt option does not compile), less what the worker sets itself. The queue
 * package's own type is looser (`Record<string, unknown>`): its backends are optional peers.
 */
export type LocalBackendOptions =
  | ({ type: 'in-process' } & Omit<InProcessBackendOptions, SetByTheWorker>)
  | ({ type: 'worker-pool' } & Omit<WorkerPoolBackendOptions, SetByTheWorker>)
  | ({ type: 'subprocess' } & Omit<SubprocessBackendOptions, SetByTheWorker>);

/** The queue package's worker options, with `backend` typed per backend. */
export interface ExecutionWorkerOptions extends Omit<UntypedWorkerOptions, 'backend'> {
  /**
   * Where executions run on this machine, with that backend's options (`maxThreads`,
   * `sandbox`, `permissions` …): its isolation is what a handler gets. `permissions` caps what
   * handlers may be granted here. @default { type: 'worker-pool' }
   */
  backend?: LocalBackendOptions | undefined;
}

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
