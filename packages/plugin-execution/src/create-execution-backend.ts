import type { LazyExecutionBackend } from '@kb-labs/plugin-execution-core';
import { lazyExecutionBackend } from '@kb-labs/plugin-execution-core/host-kit';
import type { InProcessBackendOptions } from '@kb-labs/plugin-execution-in-process';
import type { QueueBackendOptions } from '@kb-labs/plugin-execution-queue';
import type { SubprocessBackendOptions } from '@kb-labs/plugin-execution-subprocess';
import type { WorkerPoolBackendOptions } from '@kb-labs/plugin-execution-worker-pool';
import { loadBackend } from './backend-loaders.js';

/**
 * Options of `createExecutionBackend`, typed per `type`: the common BackendOptions plus what the
 * chosen backend accepts (`maxThreads` for worker-pool, `prespawn` for subprocess), with each
 * option's documentation. A misspelt option does not compile; at run time the backend refuses it
 * when it loads (VALIDATION_ERROR on every execution and in health(), naming the nearest option).
 */
export type CreateExecutionBackendOptions =
  | ({ /** Where handlers run. @default 'in-process' */ type?: 'in-process' } & InProcessBackendOptions)
  | ({ /** Where handlers run. */ type: 'worker-pool' } & WorkerPoolBackendOptions)
  | ({ /** Where handlers run. */ type: 'subprocess' } & SubprocessBackendOptions)
  | ({ /** Where handlers run: workers of a pool, through NATS JetStream (`startExecutionWorker` on each). */ type: 'queue' } & QueueBackendOptions);

/**
 * Create a backend of `type`. Returns at once; the backend package is imported on first use
 * (execute, stats, health, registerPlugin or ready). Throws ValidationError synchronously only for
 * an unknown `type` or a non-object options argument — a misuse of the API. Core exports the same
 * function, untyped per backend, for hosts that install core and their backends without this package.
 */
export function createExecutionBackend(options: CreateExecutionBackendOptions = {}): LazyExecutionBackend {
  return lazyExecutionBackend(options as Parameters<typeof lazyExecutionBackend>[0], loadBackend);
}
