import { clearTimeout, setTimeout } from '@kb-labs/plugin-execution-core/backend-kit';
import type { ThreadEndedBy } from './pool-contract.js';
import { REAP_WAIT_MS } from './thread-deadlines.js';

/**
 * Host side: a thread given time to collect its handlers' children before it is ended
 * (ChildReaper, on the thread): ended once it says `reaped`, or REAP_WAIT_MS on, whatever it
 * still lists then. Given once: a thread that took its time is not asked again.
 */
export class ReapWait {
  readonly #end: () => void;
  #timer: NodeJS.Timeout | undefined;
  #given = false;

  constructor(end: () => void) {
    this.#end = end;
  }

  /** Under way: not said `reaped` yet, and within REAP_WAIT_MS. */
  get waiting(): boolean {
    return this.#timer !== undefined;
  }

  get given(): boolean {
    return this.#given;
  }

  begin(): void {
    this.#given = true;
    this.#timer = setTimeout(() => this.done(), REAP_WAIT_MS).unref();
  }

  /** It said `reaped`, or its time is up: ended now. */
  done(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#end();
  }
}

/**
 * Ended by the pool while it waits for tasks (stopped, or a plugin it ran reloaded): it can take a
 * request to collect its children then. Not after a verdict or decline of its own (it takes nothing
 * more), nor for looping (left-busy) or breaking the protocol (terminated).
 */
export function endedWhileWaiting(why: ThreadEndedBy): boolean {
  return why.kind === 'stopped' || (why.kind === 'retired' && (why.reason === 'plugin-reloaded' || why.reason === 'plugin-unregistered'));
}
