import type { DispatchControl } from '@kb-labs/plugin-execution-core/backend-kit';

/**
 * A child's pipes, read no further while whoever takes its execution's output is behind
 * (DispatchControl.outputPace: a queue worker's caller, over the network). The child's writes,
 * synchronous, then wait once the pipe is full: the handler is paced, not its output lost.
 */
export class ReadPace {
  readonly #streams: Array<{ pause(): unknown; resume(): unknown } | null | undefined>;
  /** The wait now in force, if any. */
  #waiting: Promise<void> | undefined;

  constructor(streams: Array<{ pause(): unknown; resume(): unknown } | null | undefined>) {
    this.#streams = streams;
  }

  /** After a log line or event: pause the pipes if the execution's output is to wait. */
  after(control: DispatchControl): void {
    if (this.#waiting) return;
    const waiting = control.outputPace();
    if (!waiting) return;
    for (const stream of this.#streams) stream?.pause();
    const current: Promise<void> = waiting.then(noop, noop).then(() => {
      if (this.#waiting === current) this.release();
    });
    this.#waiting = current;
  }

  /** Read on (the wait is over, or the child exited and its pipes are to drain). */
  release(): void {
    if (!this.#waiting) return;
    this.#waiting = undefined;
    for (const stream of this.#streams) stream?.resume();
  }
}

function noop(): void {}
