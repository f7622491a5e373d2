/**
 * How many of one execution's `ctx.platform` calls may be in the host at once. A handler that
 * fires more (a `Promise.all` over ten thousand keys) has the rest wait on its own side, in the
 * order it made them, so a host service never sees more than this many calls of one execution at
 * a time and the host never holds more of them. Its result goes once every call it made is sent:
 * a call fired and not awaited is not lost. The host stops a runner that does not keep to it (a
 * plugin that writes to the transport itself): see ExecutionControl. `ctx.channel` calls are not
 * counted: the host answers them at once.
 */
export const CALLS_IN_FLIGHT = 64;

/**
 * The runner side of that bound: a call is sent at once while fewer than CALLS_IN_FLIGHT are
 * unanswered, else once one is answered, first in first out. Runner-side code (and the in-process
 * runtime): nothing here may import a schema.
 */
export class CallWindow {
  #inFlight = 0;
  #waiting: Array<() => void> = [];
  #next = 0;
  #draining = false;
  #onEmpty: (() => void) | undefined;

  /** Calls `send` now if a place is free and none waits before it, else when `leave()` frees one. */
  enter(send: () => void): void {
    this.#waiting.push(send);
    this.#drain();
  }

  /** A call that was sent is answered (or could not be sent): the next waiting one goes. */
  leave(): void {
    this.#inFlight--;
    this.#drain();
  }

  /** Settles once no call waits to be sent (at once if none does). One caller: the runner, at the end. */
  allSent(): Promise<void> {
    if (this.#next === this.#waiting.length) return Promise.resolve();
    return new Promise((resolve) => (this.#onEmpty = resolve));
  }

  /** Sends every call still waiting now, whatever the bound: the execution was stopped, and its owner refuses each at once. */
  flush(): void {
    const waiting = this.#waiting.slice(this.#next);
    this.#inFlight += waiting.length;
    this.clear();
    for (const send of waiting) send();
  }

  /** Forgets the calls still waiting (the execution ended; their owner rejects them). */
  clear(): void {
    this.#waiting = [];
    this.#next = 0;
    const onEmpty = this.#onEmpty;
    this.#onEmpty = undefined;
    onEmpty?.();
  }

  // A loop, not recursion: a send that fails at once calls leave() from inside it, and a
  // thousand of those in a row must not grow the stack.
  #drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.#inFlight < CALLS_IN_FLIGHT && this.#next < this.#waiting.length) {
        const send = this.#waiting[this.#next++]!;
        this.#inFlight++;
        send();
      }
      // An index, not shift(): a long queue drains in linear time. Compacted once it is empty.
      if (this.#next === this.#waiting.length) this.clear();
    } finally {
      this.#draining = false;
    }
  }
}
