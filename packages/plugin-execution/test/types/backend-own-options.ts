// Compile-time check (types.test.ts runs `tsc --noEmit` on this folder): core's table of the
// options only some backend types take (said when one is given to another type) names exactly
// the options the backends' own types add to the common ones, each under the backends that take it.
import type { BackendOptions } from '@kb-labs/plugin-execution-core';
import { BACKEND_OWN_OPTIONS } from '@kb-labs/plugin-execution-core/host-kit';
import type { QueueBackendOptions } from '@kb-labs/plugin-execution-queue';
import type { SubprocessBackendOptions } from '@kb-labs/plugin-execution-subprocess';
import type { WorkerPoolBackendOptions } from '@kb-labs/plugin-execution-worker-pool';

type Equal<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Own<T> = Exclude<keyof T, keyof BackendOptions>;
type Table = typeof BACKEND_OWN_OPTIONS;
type TakenBy<Type extends string> = { [K in keyof Table]: Type extends Table[K][number] ? K : never }[keyof Table];

export const workerPool: Equal<TakenBy<'worker-pool'>, Own<WorkerPoolBackendOptions>> = true;
export const subprocess: Equal<TakenBy<'subprocess'>, Own<SubprocessBackendOptions>> = true;
export const queue: Equal<TakenBy<'queue'>, Own<QueueBackendOptions>> = true;
