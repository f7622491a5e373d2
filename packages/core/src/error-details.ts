/**
 * What `error.details` holds, per error code. The same on every backend: a host reads
 * `details.reason` of a WORKER_CRASHED error, or `details.issues` of a VALIDATION_ERROR, without
 * knowing which backend ran the execution.
 *
 * Every field is JSON: details cross threads, processes and machines in the error's wire form.
 */

/** One problem found in a manifest, a request, an option or a handler's input. */
export type ValidationIssue = {
  /** A readable path: `handlers.run.entry`, `channels[0].path`, `maxThreads`, `(root)`. */
  path: string;
  message: string;
};

/**
 * Why a runner ended without handing back a result (WORKER_CRASHED `details.reason`), on every backend:
 * - `exit`: it exited (`process.exit(n)`, or ended without answering);
 * - `signal`: a process was killed by a signal it did not get from the backend;
 * - `oom`: it ran out of heap;
 * - `uncaught-exception` / `unhandled-rejection`: a thread died of an error outside the handler's promise;
 * - `protocol`: it broke the host protocol (garbage on the pipe, an oversized frame) and was killed;
 * - `start-failed`: it never became ready (a thread or process that could not start);
 * - `sandbox`: the OS sandbox could not be set up (nothing of the plugin ran);
 * - `runner-lost`: a remote runner stopped answering (queue backend).
 */
export type CrashReason = (typeof CRASH_REASONS)[number];
/** The CrashReason words (a metric attribute takes only these: see recordRunnerCrash). */
export const CRASH_REASONS = ['exit', 'signal', 'oom', 'uncaught-exception', 'unhandled-rejection', 'protocol', 'start-failed', 'sandbox', 'runner-lost'] as const;

/** Which handler an error is about, where the error knows it. */
type Subject = { pluginId?: string; handlerId?: string };

/** When a stop or a refusal happened: before the handler started, or while it ran. */
export type Phase = 'queued' | 'running';

export type ErrorDetailsByCode = {
  HANDLER_NOT_FOUND: Subject & {
    /** The handler's module file, when it was the file or its export that could not be found. */
    entry?: string;
    export?: string;
    /** The module's exports, when the export was missing. */
    exports?: string[];
    availablePlugins?: string[];
    availableHandlers?: string[];
  };
  TIMEOUT: Subject & {
    timeoutMs: number;
    /** `queued`: no runner had taken it when the time ran out (a queue backend with no free worker); absent when it ran. */
    phase?: 'queued';
    /** The platform calls (`platform.kv.get`) the host had not answered when the time ran out: what the handler was waiting for. */
    waitingFor?: string[];
  };
  PERMISSION_DENIED: Subject & {
    /** What was refused: `fs.read:/etc/passwd`, `platform.kv.get`, `env:HOME`, `childProcess`, `network` … */
    resource?: string;
    /** Permissions a manifest needs but the host did not grant (preflight). */
    missing?: string[];
    permission?: string;
    path?: string;
    service?: string;
    method?: string;
    /** `preflight`: refused before running; `runtime`: the OS or Node refused a call; `platform`: a ctx.platform call. */
    phase?: 'preflight' | 'runtime' | 'platform';
    /** The queue worker whose cap (its local backend's `permissions`) refused it (preflight there). */
    worker?: string;
  };
  /**
   * From `execute()`: the queue's bound was reached. Inside a handler, a `ctx.platform` or
   * `ctx.channel` call refused because the plugin's pending calls hold MAX_HELD_CALL_BYTES
   * already (`reason: 'calls-held'`).
   */
  QUEUE_FULL:
    | { maxQueue: number; active: number; concurrency: number; /** Where the backend has one. */ perPluginConcurrency?: number; reason?: undefined }
    | { reason: 'calls-held'; pluginId: string; called: string; heldBytes: number; bytes: number; limit: number };
  WORKER_CRASHED: Subject & {
    reason: CrashReason;
    /** The runner that ended: a thread id, a pid, a remote worker's id. */
    runnerId?: string;
    exitCode?: number | null;
    signal?: string | null;
    /** The uncaught error's message, or why the runner could not start. */
    message?: string;
    /** The end of a child process's stderr. */
    stderrTail?: string;
    /** The heap cap it ran under, for `oom`. */
    heapLimitMb?: number;
    protocolError?: string;
    sandboxError?: string;
    /**
     * `queued`: no runner had taken it, and none will (a queue task the host failed before any
     * worker's start was accepted: the server lost, the task gone from the stream).
     */
    phase?: 'queued';
  };
  VALIDATION_ERROR: {
    /** Every problem, each with its path (absent only where a single `path` says it). */
    issues?: ValidationIssue[];
    /** What was validated: `input`, `context`, `options` … */
    phase?: string;
    path?: string;
    reason?: string;
    [fact: string]: unknown;
  };
  /** `rpc`: a platform or channel call pending when the execution ended; `ended`: a call made after it ended. */
  ABORTED: { phase: Phase | 'rpc' | 'ended'; service?: string; method?: string };
  HANDLER_ERROR: {
    /** The class name of what the handler threw (the error itself is `cause`). */
    name?: string;
    /** What was thrown, when it was not an Error. */
    thrown?: { type: string; value?: unknown };
    /** The module file at fault, when loading the handler's module failed (ES module syntax in a CommonJS scope). */
    file?: string;
    /** The code of one of our errors the handler threw that a handler may not report (TIMEOUT, WORKER_CRASHED …): see docs/errors.md. */
    code?: string;
  };
  /** `phase` names where an execution was; absent for what is not an execution (a plugin change, `ready()`) refused by a shutdown. */
  SHUTTING_DOWN: { phase?: Phase };
  WORKSPACE_ERROR: { root?: string; dir?: string; executionId?: string; field?: string; reason?: string; code?: string | null };
  BACKEND_NOT_INSTALLED: { type: string; package: string; reason: 'not-installed' | 'load-failed' };
  /** A failure of the host side (this library or the host's own code), not of the handler. */
  INTERNAL_ERROR: { where?: string; what?: string; reason?: string };
};
