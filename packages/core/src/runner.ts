/**
 * The runner side of the host⇄runner protocol, as its own entry point
 * (`@kb-labs/plugin-execution-core/runner`).
 *
 * Why a second entry: the main entry defines its zod schemas at module load, and loading zod
 * costs ~60 ms of start-up. A runner (a child process per execution, a fresh worker thread)
 * needs none of the schemas — only the handler runtime, the protocol endpoint and the error
 * family — so it imports this entry and starts without zod. Nothing here may import
 * permissions.ts, manifest.ts, request.ts or anything else that builds a schema at load time.
 */
export { PROTOCOL_VERSION, unserializableError, type HostToRunner, type RunnerResult, type RunnerToHost } from './protocol.js';
export { RunnerSession } from './runner/runner-session.js';
export { runHandler, type RunnerTask, type RuntimeEnvironment } from './runner/handler-runtime.js';
export { onHandlerLoading } from './runner/handler-loader.js';
export { ExecutionError, HandlerError, PermissionDeniedError, TimeoutError, ValidationError, WorkerCrashedError, isExecutionError, toHandlerError } from './errors.js';
export { deserializeError, serializeError, type SerializedError } from './error-wire.js';
export { OutputLines, type DeprecatedOutputLimits, type OutputLimits, type StreamOutputLimits } from './output-lines.js';
export { deserializeLikeClone, refuseWhatCloneRefuses, unreadableMessageError } from './v8-wire.js';
export { tightenViews } from './tight-views.js';
// The timers as core found them (real-timers.ts), for a runner that must not load the backend kit.
export { clearTimeout, monotonicNow, setTimeout } from './real-timers.js';
