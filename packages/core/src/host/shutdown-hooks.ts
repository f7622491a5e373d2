import { settlesWithin } from '../settles-within.js';

export type ShutdownListener = () => void | Promise<void>;

/**
 * What `onShutdown()` registers: run once, when shutdown() is first called, before the backend
 * stops taking work. A listener that throws or rejects does not stop the shutdown; one that hangs
 * is waited for at most the shutdown's own timeout.
 */
export class ShutdownHooks {
  readonly #listeners = new Set<ShutdownListener>();
  #ran = false;

  add(listener: ShutdownListener): () => void {
    if (typeof listener !== 'function') throw new TypeError('onShutdown() needs a function');
    // Registered after the run: it would never be called, so say so by calling it now.
    if (this.#ran) void Promise.resolve().then(listener).catch(() => undefined);
    else this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  async run(timeoutMs: number): Promise<void> {
    this.#ran = true;
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    if (listeners.length === 0) return;
    const settled = Promise.allSettled(listeners.map((listener) => Promise.resolve().then(listener)));
    await settlesWithin(settled, timeoutMs);
  }
}
