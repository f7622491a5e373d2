/**
 * How the host and a pool thread talk, around core's host⇄runner protocol (which stays the one
 * protocol for what an execution says). Shared, type-only, by both sides.
 *
 * Two carriers, on purpose:
 * - piscina's task opens a *session*: a busy spell of the thread. It carries the first execution
 *   in; its reply says the session is over. While a session is open piscina counts the thread
 *   busy (no idle timeout, no other piscina task goes there); its reply frees the thread in
 *   piscina's books.
 * - a per-thread MessageChannel, opened once when the thread starts, carries everything else:
 *   every answer, logs, events, platform RPC and its replies, cancel, crash reports, and — while
 *   a session is open — the executions handed to the thread after the first. A message on it
 *   costs the host about half of what a piscina task does, and one channel per thread instead of
 *   one per execution halves the cost of a round trip.
 *
 * In session, the thread runs, one at a time and in the order they came, the executions handed
 * to it, answering each on the channel; up to STAGE_DEPTH wait behind the running one, and it
 * begins the next as soon as it has answered for the one before, with no round trip to the host
 * in between (the host counts it as begun when it reads that answer). With nothing left, it
 * *lingers*: an execution handed to it now begins at once (the host counts it as begun when it
 * hands it over); when nothing has come for LINGER_MS, it ends the session, and the host takes
 * back and places again whatever it handed over in the meantime. A thread that is not in session
 * claims nothing.
 *
 * The thread's shared cells (one per place) decide who gets an execution handed over the
 * channel: the host writes the dispatch id in its cell when it hands it over; whoever swaps it
 * back to 0 first owns it — the thread to begin it, the host to take it back (to cancel it, to
 * move it to a thread that fell idle, or at the session's end). The host never has to wait for a
 * thread that is stuck in a synchronous handler to hear it. One more cell, the doorbell, is bumped
 * by the host after it hands a lingering thread an execution, so that a thread busy-waiting for
 * it (see ThreadConfig) knows to go back to its event loop, where the message is.
 */
import type { HostToRunner, RunnerResult, RunnerTask, RunnerToHost, SerializedError } from '@kb-labs/plugin-execution-core';
import type { MessagePort } from 'node:worker_threads';

/** Executions that may wait on a thread behind its running one. */
export const STAGE_DEPTH = 2;
/** Claim cells per thread: one per waiting place, and one for the running execution until the thread has answered for it. */
export const CELLS = STAGE_DEPTH + 1;
/** Index of the doorbell in a thread's shared cells (after its claim cells). */
export const DOORBELL = CELLS;
/**
 * How long a thread in session waits for its next execution before it ends the session (ms).
 * Meanwhile the next one needs no piscina task: the host hands it over the channel, at about half
 * the cost, and it begins at once. piscina counts the thread busy for that long after its last
 * execution (its idle timeout starts later).
 */
export const LINGER_MS = 10;

/** The piscina task, which opens a session: `k` names the execution on the thread channel. */
export interface ThreadTask {
  k: number;
  task: RunnerTask;
}

/**
 * An execution handed over the channel to wait behind the running one: `d` is its dispatch id in
 * claim cell `c`; the thread begins it only if it can swap `d` for 0 there.
 */
export interface StagedTask extends ThreadTask {
  d: number;
  c: number;
}

/** What the thread returns to piscina when the session ends (every answer went on the channel). */
export interface ThreadAck {
  idle: 1;
}

/** First message of every thread, on piscina's parent port: the thread's end of its channel, and its shared cells. */
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
}

export type ThreadToHost =
  | { k: number; m: Exclude<RunnerToHost, RunnerResult> }
  | { k: number; out: 'stdout' | 'stderr'; lines: string[] }
  | ThreadResult
  | { crash: CrashReport };

/** The answer for execution `k`, on the channel; `retire` when the thread asks to be ended. */
export interface ThreadResult {
  k: number;
  m: RunnerResult;
  retire?: RetireReason;
}

/** Cancel, and replies to the execution's platform calls. */
export interface HostMessage {
  k: number;
  m: HostToRunner;
}

export type HostToThread = HostMessage | StagedTask;

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
