/**
 * A message of a connection handed to the backend: its own abort, so that an unmount can drop it
 * alone, and whether a runner has taken it (ExecuteOptions.onStart). Until then it waits in the
 * backend's queue, and an abort removes it unrun.
 */
export class HandedMessage {
  readonly #stop = new AbortController();
  #started = false;
  /** Set when an unmount dropped it before it started: its ABORTED result is no error to report. */
  dropped = false;

  get signal(): AbortSignal {
    return this.#stop.signal;
  }

  /** For ExecuteOptions.onStart. */
  readonly started = (): void => {
    this.#started = true;
  };

  /** Abort it if it still waits in the backend's queue (its reply could not be delivered): it never runs. */
  dropIfWaiting(): void {
    if (this.#started) return;
    this.dropped = true;
    this.#stop.abort();
  }

  /** Abort it, running or not. */
  abort(): void {
    this.#stop.abort();
  }
}
