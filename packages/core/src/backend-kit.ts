/**
 * The backend kit (`@kb-labs/plugin-execution-core/backend-kit`): what a backend author needs,
 * and nothing a host or plugin author does (those import the package root). Read with
 * docs/backend-authors.md and one backend (packages/in-process is the smallest).
 */
// The base class and what it hands to `dispatch`.
export { BaseBackend, type BackendDefaults } from './host/base-backend.js';
export { stopSignal, type DispatchControl, type RunnerInfo, type RunnerWorkspace, type StopListener } from './host/execution-control.js';
export { backendOptionsSchema, nearest, option, parseOptions } from './host/backend-options.js';
export { lazySchema, type Zod } from './host/lazy-zod.js';
export { ShutdownHooks, type ShutdownListener } from './host/shutdown-hooks.js';
// createExecutionBackend with loaders of one's own (the umbrella imports the backends from where it is installed).
export { lazyExecutionBackend } from './host/lazy-backend.js';
export { backendLoader, backendLoadError, installCommand, type BackendConstructor, type BackendLoader } from './host/backend-packages.js';
// OpenTelemetry: what only a backend with runners of its own knows (docs/observability.md).
export { recordRunnerCrash, recordRunnerStart } from './host/execution-metrics.js';
// Running a handler, and the protocol between the host and a runner elsewhere.
export { runHandler, type RunnerTask, type RuntimeEnvironment } from './runner/handler-runtime.js';
export { HostSession, type HostServices } from './host/host-session.js';
export { PROTOCOL_VERSION, unserializableError, unwrapRunnerResult, type HostToRunner, type RunnerResult, type RunnerToHost } from './protocol.js';
export { RunnerSession } from './runner/runner-session.js';
export { createPlatformProxy, type PlatformCall } from './runner/platform-proxy.js';
export { cloneForWire } from './wire-clone.js';
export { OutputLines, type OutputLimits } from './output-lines.js';
// Errors and values from untrusted runners.
export { toHandlerError, toInternalError } from './errors.js';
export { describeThrown, describeValue, toWireValue } from './wire-value.js';
export { formatPath, issuesOf, parseWith, validationError } from './validation.js';
export { settlesWithin } from './settles-within.js';
