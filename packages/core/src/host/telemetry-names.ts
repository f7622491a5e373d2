/**
 * The names of what executions record through OpenTelemetry: span attributes, span events and
 * metrics (docs/observability.md is the reference). Semantic-convention names where one exists
 * (`error.type`, `process.pid`, `thread.id`), else the `kb.plugin_execution.*` namespace.
 */
export const ATTR = {
  pluginId: 'kb.plugin_execution.plugin.id',
  pluginVersion: 'kb.plugin_execution.plugin.version',
  handlerId: 'kb.plugin_execution.handler.id',
  backend: 'kb.plugin_execution.backend',
  executionId: 'kb.plugin_execution.execution.id',
  /** `ok` or the error code (`TIMEOUT`, `HANDLER_ERROR` …). */
  outcome: 'kb.plugin_execution.outcome',
  /** Semantic conventions: the error's low-cardinality identifier, here its code; only on failure. */
  errorType: 'error.type',
  queueWaitMs: 'kb.plugin_execution.queue_wait_ms',
  runMs: 'kb.plugin_execution.run_ms',
  timeoutMs: 'kb.plugin_execution.timeout_ms',
  runnerId: 'kb.plugin_execution.runner.id',
  /** The machine a remote runner ran on (queue backend: the worker's host name). */
  runnerHost: 'kb.plugin_execution.runner.host',
  pid: 'process.pid',
  threadId: 'thread.id',
  platformService: 'kb.plugin_execution.platform.service',
  platformMethod: 'kb.plugin_execution.platform.method',
  permissionDenied: 'kb.plugin_execution.permission_denied',
  crashReason: 'kb.plugin_execution.crash.reason',
} as const;

/** Span events, at the moment the result was decided. */
export const EVENT = {
  TIMEOUT: 'kb.plugin_execution.timeout',
  ABORTED: 'kb.plugin_execution.abort',
  SHUTTING_DOWN: 'kb.plugin_execution.shutdown',
  WORKER_CRASHED: 'kb.plugin_execution.crash',
} as const satisfies Record<string, string>;

/** Metric instruments (durations in seconds, as the semantic conventions advise). */
export const METRIC = {
  duration: 'kb.plugin_execution.duration',
  queueWait: 'kb.plugin_execution.queue.wait_time',
  executions: 'kb.plugin_execution.executions',
  running: 'kb.plugin_execution.running',
  queued: 'kb.plugin_execution.queued',
  runnerStarts: 'kb.plugin_execution.runner.starts',
  runnerCrashes: 'kb.plugin_execution.runner.crashes',
} as const;
