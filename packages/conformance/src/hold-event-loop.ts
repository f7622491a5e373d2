/**
 * Holds the calling thread's event loop for `ms`, as a long synchronous task of the host would
 * (no timer fires, no message or answer is read meanwhile), blocked in `Atomics.wait` rather
 * than spinning: it spends no core, which the backend's threads and processes, and the other
 * test files run beside it, have then. Returns when the hold ended (`Date.now()`'s time).
 */
export function holdEventLoop(ms: number): number {
  const until = Date.now() + ms;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  for (let left = ms; left > 0; left = until - Date.now()) Atomics.wait(cell, 0, 0, left);
  return until;
}
