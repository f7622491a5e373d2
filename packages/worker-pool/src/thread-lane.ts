import type { ResourceLimits } from 'node:worker_threads';
import type { Execution } from './pool-contract.js';
import type { PoolThread } from './pool-thread.js';
import { VerdictWaits } from './verdict-wait.js';

/** Threads of one heap cap (a thread's `resourceLimits` are fixed when it starts). */
export interface Lane {
  readonly label: string;
  readonly heapLimitMb: number | undefined;
  readonly resourceLimits: ResourceLimits | undefined;
  readonly minThreads: number;
  /** Ready threads with nothing to run, the one used last at the end. */
  readonly idle: Array<PoolThread<Lane>>;
  /** Executions waiting for a thread of this lane (FIFO). */
  readonly waiting: Execution[];
  /** Threads alive: starting, idle, running or on their way out. */
  threads: number;
  /** Threads that have not said hello yet. */
  starting: number;
  /** Threads whose verdict is still to come, and the executions in `waiting` that wait for one of them. */
  readonly verdicts: VerdictWaits;
}

/** The execution at `index` in the lane's queue, taken out of it (and no longer counted against a verdict). */
export function takeWaiting(lane: Lane, index: number): Execution {
  const execution = index === 0 ? lane.waiting.shift()! : lane.waiting.splice(index, 1)[0]!;
  lane.verdicts.release(execution);
  return execution;
}

/** A lane for `key` (a `memoryMb`, or the default lane), its threads capped at `heapLimitMb` on top of the pool's `resourceLimits`. */
export function newLane(key: number | 'default', minThreads: number, heapLimitMb: number | undefined, base: ResourceLimits | undefined): Lane {
  const resourceLimits = heapLimitMb === undefined ? base : { ...base, maxOldGenerationSizeMb: heapLimitMb };
  return { label: key === 'default' ? key : `memoryMb=${key}`, heapLimitMb, resourceLimits, minThreads, idle: [], waiting: [], threads: 0, starting: 0, verdicts: new VerdictWaits() };
}
