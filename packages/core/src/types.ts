import type { ErrorCode, KnownExecutionError } from './errors.js';
import type { ExecuteOptions, ExecutionRequest } from './host/request.js';

/**
 * A backend's name, as `meta.backend` and `stats().backend` report it. Open: a backend built on
 * core's kit names itself (the built-in ones are listed for completion).
 */
export type BackendType = 'in-process' | 'worker-pool' | 'subprocess' | 'queue' | (string & {});

/** Facts about one execution, present on success and failure alike. */
export interface ExecutionMeta {
  executionId: string;
  backend: BackendType;
  pluginId: string;
  handlerId: string;
  /** Epoch ms when `execute()` was called. */
  startedAt: number;
  /** From `execute()` call to result. */
  durationMs: number;
  /** Time spent waiting for a free slot (queue) and workspace; on the queue backend also for a worker to take the task. All of `durationMs` for one refused or stopped before its hand-over (it waited, if at all, for the backend or its plugins to load, a slot, a workspace). */
  queueWaitMs: number;
  /** Time from handler dispatch (the queue backend: a worker taking it) to its result being decided. */
  runMs: number;
  /**
   * Time limit applied (ms): the call's, else the handler's manifest's, else the backend's
   * `defaultTimeoutMs`. 0 when the execution was refused before its handler was known (an invalid
   * request, HANDLER_NOT_FOUND, a backend shut down or not installed).
   */
  timeoutMs: number;
  /** Who ran it: a thread id, a pid, a remote worker's name (see `DispatchControl.setRunner`). */
  runnerId?: string;
  /** The machine that ran it, when not the host (queue backend: the worker's host name). */
  runnerHost?: string;
  /** Thread id (worker-pool). */
  workerId?: number;
  /** Process id (subprocess; in-process reports the host's own pid). */
  pid?: number;
  /** The workspace directory, only when it was kept (`keepWorkspace: true`). */
  workspaceDir?: string;
  /** Files the handler left in its workspace, relative to it (capped at 1000). */
  artifacts: string[];
  /** True when `artifacts` is not the whole list: the cap was reached, or the listing stopped early (too many entries, a folder it could not read). */
  artifactsTruncated?: true;
}

/**
 * What `execute()` resolves with. On failure, `error` is a union discriminated on `code`:
 * `if (!result.ok && result.error.code === 'TIMEOUT')` narrows it to TimeoutError, with typed
 * `details` (error-details.ts).
 */
export type ExecutionResult<T = unknown> =
  | { ok: true; data: T; meta: ExecutionMeta }
  | { ok: false; error: KnownExecutionError; meta: ExecutionMeta };

export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface BackendStats {
  backend: BackendType;
  state: BackendState;
  /** Executions running now. */
  active: number;
  /** Executions waiting for a slot, or for the plugins to load on first use. */
  queued: number;
  concurrency: number;
  maxQueue: number;
  /** active / concurrency, 0..1. */
  utilization: number;
  /** Executions finished, by outcome: `ok` or an error code. */
  total: number;
  byOutcome: Partial<Record<'ok' | ErrorCode, number>>;
  /**
   * Milliseconds over the last ~2 000 executions that reached a runner: one refused before it ran
   * (QUEUE_FULL, VALIDATION_ERROR of its request, HANDLER_NOT_FOUND …), or that never started
   * (its error's `details.phase` is `'queued'`), is counted in `byOutcome` only.
   */
  latency: { total: LatencySummary; wait: LatencySummary; run: LatencySummary };
  /** Backend-specific figures (threads, processes, spares …). */
  runners?: Record<string, unknown>;
}

export type BackendState = 'starting' | 'ready' | 'shutting-down' | 'closed';

/**
 * What really stands between a handler and the host on this backend, now: not what was
 * configured, but what is in force (a sandbox asked for with `'auto'` may have fallen back).
 */
export interface IsolationReport {
  /** What the host asked for, in the backend's own terms (e.g. the subprocess `sandbox` option). */
  requested: string;
  /**
   * The outermost boundary in force: `none` (the host's own thread), `thread` (a worker thread
   * of the host process), `process` (a child process, Node's permission model inside),
   * `bubblewrap` (a child process in its own namespaces, the permission model inside too).
   */
  active: 'none' | 'thread' | 'process' | 'bubblewrap' | 'unknown';
  /** Every layer in force, outermost first (e.g. `['bubblewrap', 'uid 65534', 'permission-model']`). */
  layers: string[];
  /** Why this is what is active, in a sentence. */
  reason: string;
}

export interface BackendHealth {
  ok: boolean;
  backend: BackendType;
  state: BackendState;
  /** Why it is not ok (e.g. plugin registration failed, backend not installed). */
  problems: string[];
  active: number;
  queued: number;
  /** What isolation handlers really get on this backend (docs/reliability.md). */
  isolation: IsolationReport;
}

export interface ShutdownOptions {
  /** How long running executions may take to finish before they are stopped. @default 10000 */
  timeoutMs?: number | undefined;
}

/** The one interface every backend implements. */
export interface IExecutionBackend extends AsyncDisposable {
  readonly type: BackendType;
  /**
   * Run one handler. Never rejects: every failure, including a bad request, resolves
   * `{ ok: false, error }` with an error of the ExecutionError family.
   */
  execute<T = unknown>(request: ExecutionRequest, options?: ExecuteOptions): Promise<ExecutionResult<T>>;
  stats(): Promise<BackendStats>;
  health(): Promise<BackendHealth>;
  /**
   * Stop taking work: later calls and executions waiting in the queue get SHUTTING_DOWN. Let the
   * executions called before it that hold or get a free slot run to their end (bounded by
   * `timeoutMs`; then they are stopped), then release every thread, process, timer and directory.
   * Idempotent.
   */
  shutdown(options?: ShutdownOptions): Promise<void>;
  /**
   * Run `listener` when `shutdown()` is first called, before the backend stops taking work, and
   * let shutdown wait for it (within its timeout): for what is built on the backend and must
   * close first, such as a WebSocket channel mount. It is given the shutdown's `timeoutMs`
   * (what it may take). Returns a function that removes it. A listener that throws does not stop
   * the shutdown; one added after shutdown began runs at once; one that calls `shutdown()` (in its
   * async context, awaiting it or not) is waited for no longer from that call.
   */
  onShutdown(listener: (info: { timeoutMs: number }) => void | Promise<void>): () => void;
}

export type ExecutionBackend = IExecutionBackend;
