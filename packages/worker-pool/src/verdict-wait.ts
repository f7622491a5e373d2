import type { Execution } from './pool-contract.js';
import type { PoolThread } from './pool-thread.js';

/** A thread that answered `pending`, and the execution of its handler that waits for its verdict, if one does. */
export interface OwedVerdict {
  readonly thread: PoolThread;
  waiter: Execution | undefined;
}

/**
 * One lane's threads whose verdict (stays or goes) on their last execution is still to come: they
 * answered `pending`, their handler having left handles (as every fresh thread's first execution
 * does on Node 22). Such a thread is about to be free for its handler's next task, as a thread
 * starting is: that task waits for the verdict rather than start a thread that would then idle
 * out. One task per thread, and only of the handler it ran (another handler's it may decline).
 */
export class VerdictWaits {
  readonly #owed: OwedVerdict[] = [];
  /** Executions in the lane's queue counted against a verdict (each against one). */
  awaited = 0;

  owe(thread: PoolThread): void {
    this.#owed.push({ thread, waiter: undefined });
  }

  /** Count `execution`, queued, against a verdict owed by a thread whose last task was of its handler (`key`): false if none is free. */
  wait(execution: Execution, key: string): boolean {
    if (this.#owed.length === 0) return false;
    // A stale thread takes only its old load's tasks; one ended takes none.
    const owed = this.#owed.find(({ thread, waiter }) => waiter === undefined && thread.lastHandler === key && !thread.stale && !thread.endedBy);
    if (!owed) return false;
    owed.waiter = execution;
    execution.onVerdict = owed;
    this.awaited++;
    return true;
  }

  /** `execution` leaves the queue (taken by a thread, stopped, failed): counted no more. */
  release(execution: Execution): void {
    const owed = execution.onVerdict;
    if (!owed) return;
    owed.waiter = execution.onVerdict = undefined;
    this.awaited--;
  }

  /** `thread`'s verdict came, or it is gone without one: what waited for it is counted no more (and may need a thread started). */
  settled(thread: PoolThread): void {
    if (this.#owed.length === 0) return;
    const i = this.#owed.findIndex((owed) => owed.thread === thread);
    if (i < 0) return;
    const waiter = this.#owed.splice(i, 1)[0]!.waiter;
    if (waiter) this.release(waiter);
  }
}
