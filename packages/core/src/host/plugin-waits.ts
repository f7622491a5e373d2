import { untilAborted } from './caller-abort.js';

/**
 * The executions waiting for a backend's plugins to load (its first use, a folder read again):
 * counted as queued (`stats().queued`, maxQueue), each ended at once by its caller's abort, or by
 * shutdown (`stopAll`).
 */
export class PluginWaits {
  /** The stop of each, in the order they came. */
  readonly #stops = new Set<(error: unknown) => void>();

  get size(): number {
    return this.#stops.size;
  }

  /**
   * Wait for `ready` (ABORTED once `signal` aborts, or the error given to `stopAll`), then call `then`:
   * one step after the wait, not .finally()'s more (an unregisterPlugin() called after this
   * execute() is still under way when it resolves its handler).
   */
  wait(ready: Promise<void>, signal: AbortSignal | undefined, then: () => void): Promise<void> {
    let stopWait: (error: unknown) => void = () => {};
    const waited = untilAborted(ready, signal, (stop) => this.#stops.add((stopWait = stop)));
    const left = () => this.#stops.delete(stopWait);
    return waited.then(() => (left(), then()), (error: unknown) => (left(), Promise.reject(error)));
  }

  /** End every wait with `error` (shutdown). */
  stopAll(error: unknown): void {
    for (const stop of this.#stops) stop(error);
  }
}
