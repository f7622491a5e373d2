/**
 * The timers and the monotonic clock as they were when core loaded. A host's test suite may
 * replace the globals afterwards (vitest's `vi.useFakeTimers()`, `@sinonjs/fake-timers`, which
 * replace those of `node:timers` too): read at each call, a time limit, a shutdown's deadline or a
 * crashed runner's grace period would wait on a clock the test moves by hand, or never moves (a
 * TIMEOUT that never comes, a `shutdown()` that never returns). Taken here, as a test runner takes
 * its own (vitest's `getSafeTimers`), they keep real time whatever the host fakes later. Timestamps
 * a host reads (`meta.startedAt`, a log line's `time`) stay on its `Date`, faked or not.
 */
const loadedPerformance = globalThis.performance;

export const { setTimeout, clearTimeout, setInterval, clearInterval, setImmediate, clearImmediate } = globalThis;

/** `performance.now()` on the clock core found when it loaded. */
export const monotonicNow: () => number = loadedPerformance.now.bind(loadedPerformance);

/** `performance.timeOrigin` of that clock. */
export const monotonicOrigin: number = loadedPerformance.timeOrigin;
