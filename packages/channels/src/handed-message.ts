/**
 * A message of a connection handed to the backend: its own abort, so that an unmount can drop it
 * alone, and whether a runner has taken it (ExecuteOptions.onStart). Until then it waits in the
 * backend's queue, and an abort removes it unrun.
 */
export class HandedMessage {
  readonly controller: AbortController;
  #started = false;
  /** Set when an unmount dropped it before it started: its ABORTED result is no error to report. */
  dropped = false;

  constructor(controller: AbortController) {
    this.controller = controller;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** For ExecuteOptions.onStart. */
  readonly started = (): void => {
    this.#started = true;
  };

  /** Abort it if it still waits in the backend's queue (its reply could not be delivered): it never runs. */
  dropIfWaiting(): void {
    if (this.#started) return;
    this.dropped = true;
    this.controller.abort();
  }

  /** Abort it, running or not. */
  abort(): void {
    this.controller.abort();
  }
}

/**
 * A connection's messages handed to the backend and not settled (running, or waiting in the
 * backend's queue), and the AbortControllers of those that settled, for the next ones: on Node 20
 * each new AbortSignal costs ~4 µs and gets a V8 map of its own, which made every message of a
 * busy connection several µs dearer (docs/benchmarks.md, WebSocket channels). A controller is
 * kept only once its execution has settled (core has taken its listener off by then, which the
 * conformance suite checks) and if it never aborted.
 */
export class HandedMessages {
  readonly #live = new Set<HandedMessage>();
  readonly #spares: AbortController[] = [];
  readonly #most: number;

  /** `most`: how many spare controllers to keep (the connection's concurrency). */
  constructor(most: number) {
    this.#most = most;
  }

  /** A message handed to the backend now; aborted at once when `aborted`. */
  hand(aborted: boolean): HandedMessage {
    const message = new HandedMessage(this.#spares.pop() ?? new AbortController());
    if (aborted) message.abort();
    this.#live.add(message);
    return message;
  }

  /** Its execution has settled. */
  settled(message: HandedMessage): void {
    this.#live.delete(message);
    if (!message.signal.aborted && this.#spares.length < this.#most) this.#spares.push(message.controller);
  }

  /** Drop every message still waiting in the backend's queue (an unmount). */
  dropWaiting(): void {
    for (const message of this.#live) message.dropIfWaiting();
  }

  /** Abort every message, running or waiting. */
  abortAll(): void {
    for (const message of this.#live) message.abort();
  }
}
