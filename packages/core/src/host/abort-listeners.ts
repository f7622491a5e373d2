/**
 * One 'abort' listener per AbortSignal, whatever number of executions listen to it. A host that
 * gives one signal to a batch of executions (cancel them all on Ctrl-C) would otherwise get
 * Node's MaxListenersExceededWarning ("possible memory leak") at the eleventh, though every
 * listener is removed when its execution ends.
 */
interface Listeners {
  readonly set: Set<() => void>;
  readonly fire: () => void;
}

const bySignal = new WeakMap<AbortSignal, Listeners>();

/** Calls `listener` once when `signal` aborts; returns the function that removes it. */
export function onAbort(signal: AbortSignal, listener: () => void): () => void {
  let listeners = bySignal.get(signal);
  if (!listeners) {
    const set = new Set<() => void>();
    const fire = (): void => {
      bySignal.delete(signal);
      for (const each of set) each();
      set.clear();
    };
    // Listening first: a signal-like object of the host's whose addEventListener throws leaves no
    // entry behind, which a later execution given it would take for a listener that is there.
    signal.addEventListener('abort', fire, { once: true });
    listeners = { set, fire };
    bySignal.set(signal, listeners);
  }
  // A wrapper per call: the same function may listen twice and be removed once.
  const own = (): void => listener();
  const { set, fire } = listeners;
  set.add(own);
  return () => {
    if (!set.delete(own) || set.size > 0) return;
    if (bySignal.get(signal)?.set === set) bySignal.delete(signal);
    try {
      signal.removeEventListener('abort', fire);
    } catch {
      // A signal of the host's own making (not Node's) whose removeEventListener throws: its
      // listener stays, and finds the set empty if it ever fires. The execution has ended anyway.
    }
  };
}
