/**
 * What the pool (thread-pool.ts) and the host side of each thread (pool-thread.ts) hand each
 * other: the execution, how a thread is made, what it tells the pool, and why it ended; and the
 * pool's figures (`stats().runners`).
 */
import type { ResourceLimits } from 'node:worker_threads';
import type { ExecutionError } from '@kb-labs/plugin-execution-core';
import type { DispatchControl, RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';
import type { PoolThread } from './pool-thread.js';
import type { RetireReason, ThreadConfig } from './thread-protocol.js';
import type { OwedVerdict } from './verdict-wait.js';

/** One execution handed to the pool; `k` names it on its thread's channel. */
export interface Execution {
  readonly k: number;
  readonly task: RunnerTask;
  readonly control: DispatchControl;
  readonly resolve: (data: unknown) => void;
  readonly reject: (error: unknown) => void;
  /** The stop BaseBackend decided (timeout, abort, shutdown), once it has. */
  stop: ExecutionError | undefined;
  /** Times it went to another thread because the one it was handed to died before beginning it. */
  redispatches: number;
  /** Removes the stop listener of whoever holds it now (the lane's queue, then its thread). */
  stopListening?: (() => void) | undefined;
  /** Queued, it waits for this thread's verdict (VerdictWaits) rather than for a thread started for it. */
  onVerdict?: OwedVerdict | undefined;
}

export interface ThreadSettings {
  entry: URL;
  config: ThreadConfig;
  env: Record<string, string>;
  execArgv: string[] | undefined;
  resourceLimits: ResourceLimits | undefined;
  cancelGraceMs: number;
}

/** What the pool learns from a thread: it can take an execution (after its hello, after an answer), or it exited. */
export interface ThreadEvents {
  ready(thread: PoolThread): void;
  idle(thread: PoolThread): void;
  /** It answered `pending`: its verdict, stay or go, is still to come. */
  owing(thread: PoolThread): void;
  /** That verdict came (after `idle`, if it stays). */
  verdict(thread: PoolThread): void;
  /** `thread.execution`, if set, is still unsettled. */
  gone(thread: PoolThread): void;
  /** Ended, it has not exited within STOP_WITHIN_MS (see PoolThread.abandoned); `gone` may still follow. */
  stuck(thread: PoolThread): void;
}

export type ThreadEndedBy = { kind: 'terminated' | 'stopped' } | { kind: 'retired'; reason: RetireReason };

/** The pool ended it because it did not take the execution handed to it (something an earlier handler left kept it busy). */
export function isLeftBusy(why: ThreadEndedBy | undefined): boolean {
  return why?.kind === 'retired' && why.reason === 'left-busy';
}

/** `stats().runners` (docs/backends/worker-pool.md says what each figure counts). */
export type WorkerPoolRunnerStats = {
  threads: number;
  busy: number;
  idle: number;
  startingWait: number;
  minThreads: number;
  maxThreads: number;
  started: number;
  crashed: number;
  terminated: number;
  retired: Record<RetireReason, number>;
  stopped: number;
  redispatched: number;
  failedToStart: number;
  /** Threads terminated that have not exited: blocked in a synchronous call, or waiting for their work on Node's thread pool (PoolThread.abandoned), not counted in `threads`. */
  abandoned: number;
  lanes: Record<string, { threads: number; busy: number; heapLimitMb?: number }>;
};
