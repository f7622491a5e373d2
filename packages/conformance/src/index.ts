/**
 * One behaviour suite every plugin-execution backend must pass (`describeConformance`), the
 * helpers its tests use, and the fixture plugins. The hostile-plugin matrix is the
 * `./hostile-matrix` entry.
 */
export { describeConformance } from './describe-conformance.js';
export type { BackendFactory, ConformanceCapabilities } from './suite-context.js';
export { TIMEOUT_OPTION_REFUSALS, expectError, expectOk, waitFor } from './expect-result.js';
export { testPlatform } from './test-platform.js';
export { holdEventLoop } from './hold-event-loop.js';
export { TURN_WATCH_PAYLOAD, turnWatchingPlatform } from './turn-watch.js';
export { fixturePlugins, BASIC, CJS, GUARDED, HOSTILE, RELOADABLE } from './fixtures.js';
export { installTestSdk, total, type TestSdk, type Point } from './telemetry-sdk.js';
export { canLimitPids, runInPidsCgroup } from './pids-cgroup.js';
export { describeFuzz, fuzzSeeds, runFuzzSeed, type FuzzBackendFactory, type FuzzCapabilities } from './fuzz/describe-fuzz.js';
export { FUZZ_A, FUZZ_B, fuzzPluginSource } from './fuzz/fuzz-plugins.js';
