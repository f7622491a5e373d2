/**
 * How the host and a pool thread talk, around core's host⇄runner protocol (which stays the one
 * protocol for what an execution says). Shared, type-only, by both sides.
 *
 * Two carriers, on purpose:
 * - piscina's task carries the RunnerTask in and, as its reply, the result (when it is plain
 *   data) and a count of what was sent on the channel; its completion is what frees the thread
 *   in piscina's books.
 * - a per-thread MessageChannel, opened once when the thread starts, carries everything else:
 *   logs, events, platform RPC and its replies, cancel, crash reports, and results that are not
 *   plain data. One channel per thread instead of one per execution halves the cost of a round
 *   trip (measured: a MessageChannel per execution costs as much as piscina's own round trip).
 */
import type { HostToRunner, RunnerResult, RunnerTask, RunnerToHost, SerializedError } from '@kb-labs/plugin-execution-core';
import type { MessagePort } from 'node:worker_threads';

/** The piscina task: `k` names the execution on the thread channel. */
export interface ThreadTask {
  k: number;
  task: RunnerTask;
}

/**
 * What the thread returns to piscina: the result itself when it is plain data (the common case:
 * one message back), else nothing, the result then being on the channel. `n` is how many other
 * messages (logs, events, RPC) the execution sent on the channel before: the host has handled
 * them all before it reports the result.
 */
export interface ThreadAck {
  n: number;
  r?: RunnerResult;
}

/** First message of every thread, on piscina's parent port: the thread's end of its channel. */
export interface ThreadHello {
  kbWorkerPool: 'hello';
  threadId: number;
  port: MessagePort;
}

export function isThreadHello(message: unknown): message is ThreadHello {
  return typeof message === 'object' && message !== null && (message as { kbWorkerPool?: unknown }).kbWorkerPool === 'hello';
}

/** Why a thread asks not to be reused after it answered. */
export type RetireReason = 'globals-tampered' | 'handles-left' | 'recycled';

/**
 * How a thread is dying, as the thread itself saw it, sent just before it goes. `k` is the
 * execution it was running then, or -1 between executions: an execution handed to a thread
 * that dies before starting it never ran, and can safely go to another thread.
 */
export interface CrashReport {
  k: number;
  reason: 'uncaught-exception' | 'unhandled-rejection' | 'exit';
  error?: SerializedError;
  exitCode?: number;
}

export type ThreadToHost =
  | { k: number; m: Exclude<RunnerToHost, RunnerResult> }
  | { k: number; out: 'stdout' | 'stderr'; lines: string[] }
  | { k: number; m: RunnerResult; retire?: RetireReason }
  | { crash: CrashReport };

export interface HostToThread {
  k: number;
  m: HostToRunner;
}

/** `workerData` of every thread. */
export interface ThreadConfig {
  /** Retire after this many executions (0 = never). */
  maxExecutions: number;
  /** stdout/stderr capture limits (see OutputTap). */
  maxOutputPerStream: number;
  maxLogLineLength: number;
}
