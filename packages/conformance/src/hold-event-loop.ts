/** A cell no one notifies: a wait on it ends at its time limit only. */
const nobodyWakes = new Int32Array(new SharedArrayBuffer(4));

/**
 * Holds the calling thread's event loop for `ms`, as a long synchronous task of the host would
 * (no timer fires, no message or answer is read meanwhile), blocked in `Atomics.wait` rather
 * than spinning: it spends no core, which the backend's threads and processes, and the other
 * test files run beside it, have then. `ms` may be a fraction (a slow log sink's 0.8 ms a line).
 * Returns when the hold ended, on `Date.now()`'s clock.
 */
export function holdEventLoop(ms: number): number {
  const until = performance.now() + ms;
  for (let left = ms; left > 0; left = until - performance.now()) Atomics.wait(nobodyWakes, 0, 0, left);
  return Date.now();
}
