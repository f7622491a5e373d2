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
 *
 * A thread holds at most two executions: the one running and one waiting behind it, which it
 * begins as soon as it has answered for the first, with no round trip to the host in between
 * (the host counts it as started once it learns of that answer). Without that, a thread sleeps
 * between two executions and has to be woken for each: measured, half the throughput of raw
 * piscina on trivial handlers.
 *
 * The thread's shared cells hold a third one, its doorbell: the host bumps it after it posts the
 * thread anything, so that a thread busy-waiting for its next execution (see ThreadConfig) knows
 * to go back to its event loop, where the message is.
 *
 * Who gets to decide about a waiting execution, the thread (begin it) or the host (take it back,
 * to cancel it or to move it to a thread that fell idle), is settled by a shared Int32, its claim
 * cell (two per thread, used in turn): the host writes the dispatch id there when it hands the
 * execution over; whoever swaps it back to 0 first owns it. The host never has to wait for a thread that is
 * stuck in a synchronous handler to hear it.
 */
import type { HostToRunner, RunnerResult, RunnerTask, RunnerToHost, SerializedError } from '@kb-labs/plugin-execution-core';
import type { MessagePort } from 'node:worker_threads';

/**
 * The piscina task: `k` names the execution on the thread channel. `d`, set when it is handed over
 * to wait behind the running one, is its dispatch id in claim cell `c`: the thread begins it only
 * if it can swap `d` for 0 there.
 */
export interface ThreadTask {
  k: number;
  task: RunnerTask;
  d?: number;
  c?: number;
}

/**
 * What the thread returns to piscina: the result itself when it is plain data (the common case:
 * one message back), else nothing, the result then being on the channel. `n` is how many other
 * messages (logs, events, RPC) the execution sent on the channel before: the host has handled
 * them all before it reports the result. `w` marks an execution the host took back before the
 * thread began it (it lost the claim): it never ran.
 */
export interface ThreadAck {
  n: number;
  r?: RunnerResult;
  w?: 1;
}

/** First message of every thread, on piscina's parent port: the thread's end of its channel, and its claim cell. */
export interface ThreadHello {
  kbWorkerPool: 'hello';
  threadId: number;
  port: MessagePort;
  claims: SharedArrayBuffer;
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
  /**
   * The answer for the execution before this one, when this one had been waiting behind it:
   * piscina drops replies it has not read when a thread dies, so an execution that finished an
   * instant before its successor crashed the thread would otherwise lose its result.
   */
  answered?: { k: number; ack: ThreadAck };
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
  /** How long an idle thread busy-waits for its next execution (µs; 0 = never), while a core is free for it. */
  spinWaitUs: number;
  /** Cores the process may use (os.availableParallelism()). */
  cores: number;
  /**
   * Shared with the host and every thread: [0] executions running (the host's count), [1] threads
   * busy-waiting now. A thread busy-waits only while running ones, the waiting ones, itself and
   * the host thread fit on the cores.
   */
  load: SharedArrayBuffer;
}
