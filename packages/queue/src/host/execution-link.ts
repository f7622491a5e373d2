import type { Kind, WorkerIdentity } from '../shared/wire.js';
import type { QueuedTask } from './stream-tasks.js';

/** What one remote execution needs from the host's connection (HostLink). */
export interface ExecutionLink {
  readonly maxPayloadBytes: number;
  /** The largest body one message carries. */
  readonly partBytes: number;
  /** The largest input the task message carries itself (see HostLink). */
  readonly inlineInputBytes: number;
  readonly workerLostMs: number;
  /** Whether executions get a workspace on the worker. */
  readonly workspace: boolean;
  /** Put the task on the pool's stream; resolves with where it is there. */
  publishTask(executionId: string, taskId: string, encode: () => Uint8Array): Promise<QueuedTask>;
  /** Remove a task not yet started from the stream (best effort: a worker may have it already). */
  deleteTask(task: QueuedTask): void;
  /** Whether the stream still holds the task at its sequence (undefined: the read failed). */
  holdsTask(task: QueuedTask): Promise<boolean | undefined>;
  toWorker(workerId: string, kind: Kind, executionId: string, body: Uint8Array, signal?: AbortSignal): Promise<void> | undefined;
  /** When a worker process last said it is there (its presence), if it did. */
  workerSeenAt(worker: WorkerIdentity): number | undefined;
}
