/**
 * Milliseconds since the epoch, at sub-millisecond resolution, on a clock that the host's
 * threads and the processes it starts read alike: `ExecuteOptions.beginBy` is a time on it,
 * compared by a runner in another thread or process.
 */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}
