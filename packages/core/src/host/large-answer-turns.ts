import { approximateBytes } from './held-calls.js';
import { setImmediate } from '../real-timers.js';

/**
 * A platform answer about this large (approximately: see approximateBytes) is encoded or copied in
 * a turn of the host's event loop of its own. Encoding one takes the host's thread a while (a 50 MB
 * string: over a second), and answers that settle together were all handled in one run of
 * microtasks: a handler that asked for 16 of them at once held the host's event loop for 25 s (55 s
 * in-process, copying objects), its own time limit and every other execution's timers with it.
 */
export const LARGE_ANSWER_BYTES = 1024 * 1024;

/**
 * Whether `value` is a large answer (LARGE_ANSWER_BYTES). Never throws: an answer a getter or a
 * Proxy trap of which throws (the host's own service's, read after its send already failed on it
 * and told the handler so) counts as large, so the answers after it only wait a turn; a throw here
 * ran in a promise callback of no one's and ended the host's process (an unhandled rejection).
 */
export function isLargeAnswer(value: unknown): boolean {
  try {
    return approximateBytes(value, LARGE_ANSWER_BYTES) > LARGE_ANSWER_BYTES;
  } catch {
    return true;
  }
}

/**
 * One execution's answers to its platform and channel calls, sent (or copied) in the order they
 * settle: at once, unless a large one went in this turn of the event loop; then once it has turned.
 * A job returns whether what it sent was large; it is told whether it waited for its turn.
 */
export class LargeAnswerTurns {
  #waiting: Array<(waited: boolean) => boolean> | undefined;

  run(job: (waited: boolean) => boolean): void {
    if (this.#waiting) this.#waiting.push(job);
    else if (job(false)) this.#waitForNextTurn([]);
  }

  #waitForNextTurn(waiting: Array<(waited: boolean) => boolean>): void {
    this.#waiting = waiting;
    setImmediate(() => {
      const due = this.#waiting ?? [];
      this.#waiting = undefined;
      for (let i = 0; i < due.length; i++) {
        if (due[i]!(true)) return this.#waitForNextTurn(due.slice(i + 1));
      }
    });
  }
}
