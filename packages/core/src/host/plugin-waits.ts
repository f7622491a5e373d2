import { untilAborted } from './caller-abort.js';
import { LiveMap } from './live-list.js';

/**
 * The executions waiting for a backend's plugins to load (its first use, a folder read again):
 * counted as queued (`stats().queued`, maxQueue), each ended at once by its caller's abort, or by
 * shutdown (`stopAll`).
 */
export class PluginWaits {
  /** The stop of each, in the order they came. */
  readonly #stops = new Set<(error: unknown) => void>();
  /** How many wait, by plugin id (a LiveMap: an id comes and goes with its executions). */
  readonly #byPlugin = new LiveMap<number>();

  get size(): number {
    return this.#stops.size;
  }

  /** How many of them are executions of `pluginId`. */
  of(pluginId: string): number {
    return this.#byPlugin.get(pluginId) ?? 0;
  }

  /**
   * An execution of `pluginId` waits for `ready` (ABORTED once `signal` aborts, or the error given
   * to `stopAll`), then calls `then`: one step after the wait, not .finally()'s more (an
   * unregisterPlugin() called after this execute() is still under way when it resolves its handler).
   */
  wait(ready: Promise<void>, signal: AbortSignal | undefined, pluginId: string, then: () => void): Promise<void> {
    let stopWait: (error: unknown) => void = () => {};
    const waited = untilAborted(ready, signal, (stop) => this.#stops.add((stopWait = stop)));
    this.#byPlugin.set(pluginId, this.of(pluginId) + 1);
    const left = () => {
      this.#stops.delete(stopWait);
      const still = this.of(pluginId) - 1;
      if (still > 0) this.#byPlugin.set(pluginId, still);
      else this.#byPlugin.delete(pluginId);
    };
    return waited.then(() => (left(), then()), (error: unknown) => (left(), Promise.reject(error)));
  }

  /** End every wait with `error` (shutdown). */
  stopAll(error: unknown): void {
    for (const stop of this.#stops) stop(error);
  }
}
