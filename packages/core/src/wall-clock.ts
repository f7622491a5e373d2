/** `Date.now` as it was when core loaded, before any plugin code ran where core runs (a handler that replaces it does not move this clock). */
const dateNow = Date.now;

/**
 * Milliseconds since the epoch on the system clock, which the host's threads and the processes
 * it starts read alike: `ExecuteOptions.beginBy` is a time on it, compared by a runner in another
 * thread or process.
 */
export function wallClockMs(): number {
  return dateNow();
}
