import type { DispatchControl } from './execution-control.js';

/**
 * What a backend does while whoever takes an execution's output is behind
 * (DispatchControl.outputPace: a queue worker's caller, over the network): it `hold`s its runner
 * (reads no more of it, so the handler waits) and `release`s it once that wait settled, or when
 * the execution or the runner ends. One wait at a time.
 */
export class OutputPacer {
  readonly #hold: () => void;
  readonly #release: () => void;
  /** The wait in force, if any. */
  #waiting: Promise<void> | undefined;

  constructor(hold: () => void, release: () => void) {
    this.#hold = hold;
    this.#release = release;
  }

  get holding(): boolean {
    return this.#waiting !== undefined;
  }

  /** After a log line or event of `control`'s execution: hold the runner if its output is to wait. */
  after(control: DispatchControl): void {
    if (this.#waiting) return;
    const waiting = control.outputPace();
    if (!waiting) return;
    const current: Promise<void> = waiting.then(noop, noop).then(() => {
      if (this.#waiting === current) this.release();
    });
    this.#waiting = current;
    this.#hold();
  }

  /** Read on (the wait is over, or the execution or its runner ended). */
  release(): void {
    if (!this.#waiting) return;
    this.#waiting = undefined;
    this.#release();
  }
}

function noop(): void {}
