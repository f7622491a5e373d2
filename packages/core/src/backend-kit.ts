/**
 * The backend kit (`@kb-labs/plugin-execution-core/backend-kit`): what a backend author needs,
 * and nothing a host or plugin author does (those import the package root). Read with
 * docs/backend-authors.md and one backend (packages/in-process is the smallest).
 */
// The base class and what it hands to `dispatch`.
export { BaseBackend, type BackendDefaults } from './host/base-backend.js';
export { stopSignal, type DispatchControl, type RunnerInfo, type RunnerWorkspace, type StopListener } from './host/execution-control.js';
export { backendOptionsSchema, pluginSourcesSchema } from './host/backend-options.js';
// What a package that adds to the host needs as well (options, loading backends, errors): host-kit.ts.
export * from './host-kit.js';
export { ShutdownHooks, type ShutdownListener } from './host/shutdown-hooks.js';
// OpenTelemetry: what only a backend with runners of its own knows (docs/observability.md).
export { recordRunnerCrash, recordRunnerStart } from './host/execution-metrics.js';
// Running a handler, and the protocol between the host and a runner elsewhere.
export { runHandler, type RunnerTask, type RuntimeEnvironment } from './runner/handler-runtime.js';
export { HostSession, hostCallError, type HostServices } from './host/host-session.js';
export { OutputPacer } from './host/output-pacer.js';
export { LargeAnswerTurns, isLargeAnswer } from './host/large-answer-turns.js';
export { PROTOCOL_VERSION, describeShape, hostLogFields, hostLogMessage, runnerMessageProblem, taskUnserializableError, unserializableError, unwrapRunnerResult, type HostToRunner, type RunnerResult, type RunnerToHost } from './protocol.js';
export { RunnerSession } from './runner/runner-session.js';
export { createPlatformProxy, type PlatformCall } from './runner/platform-proxy.js';
export { CALLS_IN_FLIGHT, CallWindow } from './runner/call-window.js';
export { callAfterEnd, callCutShort, callName, type CallTarget } from './runner/call-errors.js';
export { cloneForWire } from './wire-clone.js';
export { OutputLines, type DeprecatedOutputLimits, type OutputLimits, type StreamOutputLimits } from './output-lines.js';
// Values from untrusted runners.
export { describeThrown, describeValue, isError, toWireValue } from './wire-value.js';
export { deserializeLikeClone, refuseTaskWhatV8Loses, refuseWhatCloneRefuses, unreadableMessageError } from './v8-wire.js';
export { tightenViews } from './tight-views.js';
export { wallClockMs } from './wall-clock.js';
export { MAX_EXECUTION_ID_LENGTH } from './host/workspace-manager.js';
export { missingFilesOf } from './host/plugin-files.js';
export { sourceRoot } from './host/plugin-source.js';
export { passingShortage } from './passing-shortage.js';
// Collections of what is live, for what comes and goes once per execution (not a Set or Map: live-list.ts).
export { LiveList, LiveMap, type LiveEntry } from './host/live-list.js';
export { CONTROLS_BEYOND_C0, shownControls } from './shown-controls.js';
export { cutText } from './cut-text.js';
export { serializeErrorForRunner } from './error-wire.js';
export { hostMayAccess, hostPermissionProblem, permissionModelFlag, refusedByHostPermissions, type PermissionFlag } from './host/host-permissions.js';
