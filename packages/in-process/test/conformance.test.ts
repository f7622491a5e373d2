import { describeConformance } from '@kb-labs/plugin-execution-conformance';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';

// In-process shares the host's event loop and globals: it cannot stop a busy loop, survive
// process.exit, or undo a prototype change. The suite skips exactly those, and the docs say so.
// Inside vitest its handler modules are loaded by vitest's module runner, not Node's: module
// loading errors are proven in a plain Node process instead (module-loading.test.ts).
describeConformance('in-process', (options) => new InProcessBackend(options), {
  preemptsSyncCode: false,
  isolatesCrashes: false,
  isolatesGlobals: false,
  loadsModulesWithNode: false,
  capturesOutput: false,
  sharesMemory: true,
});
