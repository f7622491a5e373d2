import { BEGUN, LOOKED_FOR_TASK, TAKEN, WAITING_FOR_TASK } from './flow-control.js';
import type { MessagePort } from 'node:worker_threads';
import { monotonicNow } from '@kb-labs/plugin-execution-core/backend-kit';

/**
 * The host's count of the tasks it handed one thread, against what the thread's runtime says of
 * taking them in the shared buffer of its hello (ThreadHello.wake), where plugin code cannot write:
 * whether it took the last one, began an execution, or is kept busy by what a handler left running.
 */
export class HandOff {
  readonly #wake: Int32Array;
  /** Tasks posted to it, and when the last one was (monotonicNow()). */
  #handed = 0;
  #handedAt = 0;
  /** LOOKED_FOR_TASK as it was just before the last task was posted. */
  #lookedBefore = 0;
  /** Checks in a row that found it idle but not waiting for a task (see idleSpinning), and TAKEN as the last one saw it. */
  #notWaiting = 0;
  #takenSeen = 0;

  constructor(wake: Int32Array) {
    this.#wake = wake;
  }

  /** Call just before a task is posted to the thread. */
  posting(): void {
    this.#lookedBefore = Atomics.load(this.#wake, LOOKED_FOR_TASK);
  }

  /** The task is posted: wake the thread if it sleeps waiting for one. */
  posted(): void {
    Atomics.add(this.#wake, 0, 1);
    Atomics.notify(this.#wake, 0);
    this.#handed++;
    this.#handedAt = monotonicNow();
  }

  /** Post `message` on the thread's task port, where it looks when it wakes (a request it takes as it would a task), and wake it. */
  post(port: MessagePort, message: unknown): void {
    this.posting();
    port.postMessage(message);
    this.posted();
  }

  /** It took the last task handed to it (one it never took never began there). */
  get tookLast(): boolean {
    return Atomics.load(this.#wake, TAKEN) === this.#handed;
  }

  /** Its runtime began execution `k`: it must never run elsewhere then. */
  began(k: number): boolean {
    return Atomics.load(this.#wake, BEGUN) === (k | 0);
  }

  /** Handed a task more than `ms` ago that it has neither taken nor looked for since. */
  leftBusy(now: number, ms: number): boolean {
    if (now - this.#handedAt <= ms) return false;
    return Atomics.load(this.#wake, TAKEN) !== this.#handed && Atomics.load(this.#wake, LOOKED_FOR_TASK) === this.#lookedBefore;
  }

  /**
   * One more check of an idle thread: true once it was found not waiting for a task `checks` times
   * in a row, taking none in between. One that took a task since the last check is not spinning:
   * its handler keeps it busy a moment after each answer, and each next task waits for its verdict.
   */
  idleSpinning(idle: boolean, checks: number): boolean {
    const taken = Atomics.load(this.#wake, TAKEN);
    if (!idle || taken !== this.#takenSeen || Atomics.load(this.#wake, WAITING_FOR_TASK) === 1) {
      this.#takenSeen = taken;
      this.#notWaiting = 0;
      return false;
    }
    return ++this.#notWaiting >= checks;
  }
}
