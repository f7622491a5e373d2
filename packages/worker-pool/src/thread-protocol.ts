/**
 * What the host and a pool thread say to each other, around core's host⇄runner protocol (the one
 * protocol for what an execution says). Type-only, shared by both sides.
 *
 * A thread's first message, on its parentPort, hands the host one end of a MessageChannel the
 * thread opened; everything else travels on that channel. Plugin code on the thread can reach
 * `parentPort` but not the channel, so what it posts there is never mistaken for the pool's own
 * messages (the host ignores parentPort after the hello). One execution runs on a thread at a
 * time; `k` names it, so that a late cancel or platform reply never reaches the next one.
 */
import type { SerializedError } from '@kb-labs/plugin-execution-core';
import type { HostToRunner, RunnerToHost, StreamOutputLimits } from '@kb-labs/plugin-execution-core/backend-kit';
import type { MessagePort } from 'node:worker_threads';
import type { PackedTask } from './task-wire.js';

/** `workerData` of every thread. */
export interface ThreadConfig {
  /** Retire after this many executions (0 = never). */
  maxExecutions: number;
  /** What stdout and stderr deliver per execution (see OutputTap). */
  output: StreamOutputLimits;
  /**
   * The Node flags the thread runs with (the pool's `execArgv`, or the host's that it inherits),
   * which a Worker a handler starts inherits (inspector-lock.ts): the thread's own
   * `process.execArgv` loses all after a flag whose value comes apart (`--title kb`) in a Worker
   * given an `env`, as the pool's threads are (Node 20 to 24).
   */
  execArgv: string[];
}

/** The thread's first message, on its parentPort. */
export interface ThreadHello {
  kbWorkerPool: 'hello';
  port: MessagePort;
  /** Where the host posts tasks: read by the thread only between executions (never by an event-loop listener), after bumping LOOKED_FOR_TASK. */
  tasks: MessagePort;
  /** [0] is bumped, and notified, by the host after each task it posts: the idle thread waits on it; [1] and [2] are flow-control.ts's; [3] counts the tasks the thread has taken. */
  wake: SharedArrayBuffer;
  /** Its heap cap in MB as V8 applies it (the host's `--max-old-space-size`, or V8's default, where the pool sets none). */
  heapLimitMb: number;
}

/** Why a thread asks not to be reused after it answered. */
export type ThreadRetireReason = 'globals-tampered' | 'handles-left' | 'recycled';

/**
 * Why a thread was retired: it asked, or the host retired it: it had loaded a plugin since
 * reloaded, or it did not take the execution handed to it (`left-busy`: what the previous handler
 * left running after its answer — a microtask loop, say — kept it busy).
 */
/** Why a thread that ran a plugin's code is retired once idle. */
export type StaleReason = 'plugin-reloaded' | 'plugin-unregistered';
export type RetireReason = ThreadRetireReason | StaleReason | 'left-busy';

/**
 * How a thread is dying, as the thread itself saw it, sent just before it goes. `k` is the
 * execution it was running then, or -1 between executions.
 */
export interface CrashReport {
  k: number;
  reason: 'uncaught-exception' | 'unhandled-rejection' | 'exit';
  error?: SerializedError;
  exitCode?: number;
}

/** On the task port. */
export interface TaskMessage {
  k: number;
  task: PackedTask;
}

/**
 * On the task port, to an idle thread the host ends whose handlers' children are listed (one
 * started after its last verdict, a few awaits after an answer): it collects them, says `reaped`,
 * and takes nothing more.
 */
export interface ReapRequest {
  reap: true;
}

/** On the channel. */
export type HostToThread = { k: number; m: HostToRunner };

/**
 * What a thread says of itself after an execution: `retire`, it goes (with `reaping`, it collects its
 * handler's children first, and says `reaped` when the host may end it); `bound`, it holds code its
 * handler left to run later (LaterWatch) or a listener on process, so it declines another handler's task.
 */
export type ThreadVerdict = { retire?: ThreadRetireReason; reaping?: boolean; bound?: true };

/** `units`: what a paced message counts against the thread's window (flow-control.ts); the host marks it read. */
export type ThreadToHost =
  /** An answer (`m` a result) carries the thread's verdict, or `pending`: it follows as `{ k, verdict }` (the handler left handles the thread looks at again for a few turns first). */
  | ({ k: number; m: RunnerToHost; pending?: true; units?: number } & ThreadVerdict)
  | { k: number; verdict: ThreadVerdict }
  | { reaped: true }
  | { k: number; out: 'stdout' | 'stderr'; lines: string[]; units?: number }
  | { crash: CrashReport }
  /** It did not begin task `k`: a handler before it changed the thread's globals (see worker-entry's execute). */
  | { k: number; declined: ThreadRetireReason };
