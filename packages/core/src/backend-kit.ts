/**
 * The backend kit (`@kb-labs/plugin-execution-core/backend-kit`): what a backend author needs,
 * and nothing a host or plugin author does (those import the package root). Read with
 * docs/backend-authors.md and one backend (packages/in-process is the smallest).
 */
// The base class and what it hands to `dispatch`.
export { BaseBackend, type BackendDefaults } from './base-backend.js';
export { stopSignal, type DispatchControl, type RunnerInfo, type StopListener } from './execution-control.js';
export { BackendOptionsSchema, nearest, option, parseOptions } from './backend-options.js';
export { ShutdownHooks, type ShutdownListener } from './shutdown-hooks.js';
// Running a handler, and the protocol between the host and a runner elsewhere.
export { runHandler, type RunnerTask, type RuntimeEnvironment } from './handler-runtime.js';
export {
  HostSession,
  PROTOCOL_VERSION,
  RunnerSession,
  unserializableError,
  unwrapRunnerResult,
  type HostServices,
  type HostToRunner,
  type RunnerResult,
  type RunnerToHost,
} from './runner-protocol.js';
export { createPlatformProxy, type PlatformCall } from './platform-proxy.js';
export { cloneForWire } from './wire-clone.js';
export { OutputLines, type OutputLimits } from './output-lines.js';
// Errors and values from untrusted runners.
export { toHandlerError, toInternalError } from './errors.js';
export { describeThrown, describeValue, toWireValue } from './wire-value.js';
export { formatPath, issuesOf, parseWith, validationError } from './validation.js';
export { settlesWithin } from './settles-within.js';
