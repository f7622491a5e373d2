/**
 * Listeners a handler left on `process`: an 'uncaughtException' one would receive the next
 * plugin's errors (and turn its crash into a TIMEOUT), an 'exit' one would run its code later.
 * Compared one by one with the thread's own, taken before its first execution: one of the
 * runtime's swapped for the handler's own (the same number) is a change too.
 *
 * The whole comparison copies every event's listeners. After each execution (whether the thread
 * stays bound to its handler, worker-entry.ts) it runs only when `process` said that a listener
 * was added or removed since the last one ('newListener' and 'removeListener', which
 * EventEmitter emits for every change made through its methods). When another handler's task
 * comes it always runs (globalsTampered): what a handler changed past those events (`_events`
 * written directly, this watch's own listeners taken off first) is caught there, before any
 * other plugin's code runs on the thread.
 */
const rawListeners = process.rawListeners.bind(process) as (event: string | symbol) => unknown[];
const eventNames = process.eventNames.bind(process);
const addListener = process.on.bind(process) as (event: string, listener: () => void) => unknown;
const hasCaptureCallback = process.hasUncaughtExceptionCaptureCallback.bind(process);

export class ListenerWatch {
  /** The listeners of each event on `process` when the thread was clean, one by one. */
  #baseline: Map<string | symbol, readonly unknown[]> | undefined;
  /** A listener was added or removed since the last whole comparison that found none changed. */
  #touched = true;

  /** Call when the thread is idle and clean (before its first execution). */
  mark(): void {
    if (this.#baseline) return;
    const touch = (): void => {
      this.#touched = true;
    };
    // Before the baseline is taken: these two are the runtime's own.
    addListener('newListener', touch);
    addListener('removeListener', touch);
    this.#baseline = new Map(eventNames().map((event) => [event, rawListeners(event)]));
  }

  /**
   * A listener added, removed or swapped on any event of `process` (not only the error events: a
   * `'worker'`, `'newListener'` or `'workerMessage'` listener runs its code during a later
   * execution), or an uncaught-exception capture callback set (it would take the next plugin's crashes).
   */
  changed(): boolean {
    const changed = this.#listenersChanged() || hasCaptureCallback();
    if (!changed) this.#touched = false;
    return changed;
  }

  /** changed(), compared whole only when `process` said a listener came or went since the last comparison. */
  changedSinceLastLook(): boolean {
    return this.#touched ? this.changed() : hasCaptureCallback();
  }

  #listenersChanged(): boolean {
    const baseline = this.#baseline!;
    const names = eventNames();
    for (const event of names) if (!sameListeners(rawListeners(event), baseline.get(event))) return true;
    for (const [event, before] of baseline) if (before.length > 0 && !names.includes(event)) return true;
    return false;
  }
}

function sameListeners(now: readonly unknown[], before: readonly unknown[] = []): boolean {
  if (now.length !== before.length) return false;
  for (let i = 0; i < now.length; i++) if (now[i] !== before[i]) return false;
  return true;
}
