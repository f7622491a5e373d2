import { ValidationError, WorkerCrashedError, deserializeError, type ErrorDetailsByCode } from '@kb-labs/plugin-execution-core';
import { refusedByHostPermissions, shownControls, type RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';
import { isLeftBusy } from './pool-contract.js';
import type { PoolThread } from './pool-thread.js';

/**
 * `details` of a WORKER_CRASHED error: core's, the same on every backend. From a thread: `reason`
 * is `exit`, `oom`, `uncaught-exception`, `unhandled-rejection` or `start-failed`; `runnerId` is
 * `thread:<threadId>` (as `meta.runnerId`).
 */
export type WorkerCrashDetails = ErrorDetailsByCode['WORKER_CRASHED'];

/**
 * Why the thread running `task` (execution `k`) died, from what it left behind: the Worker's
 * 'error' event (ERR_WORKER_OUT_OF_MEMORY is the only reliable OOM signal), the thread's own
 * report (which tells an unhandled rejection from an uncaught exception), and the exit code.
 */
export function crashError(thread: PoolThread, k: number, task: RunnerTask, laneHeapLimitMb: number | undefined): WorkerCrashedError {
  const where = `Worker thread ${thread.id} running handler "${task.handlerId}" of plugin "${task.pluginId}"`;
  const base = { runnerId: `thread:${thread.id}`, pluginId: task.pluginId, handlerId: task.handlerId, ...exitCodeOf(thread.exitCode) };
  const crashed = (message: string, details: WorkerCrashDetails, cause?: unknown) =>
    new WorkerCrashedError(message, { details: { ...details }, ...(cause !== undefined ? { cause } : {}) });
  const error = thread.error as (Error & { code?: unknown }) | undefined;
  // First: a thread dying of it closes its channel before it exits, and tearing down a heap of
  // gigabytes outlasts the wait after which a closed channel is taken for plugin code's doing.
  if (error?.code === 'ERR_WORKER_OUT_OF_MEMORY') {
    // Its lane's cap (memoryMb, resourceLimits); else V8's, as the thread said at its start.
    const heapLimitMb = laneHeapLimitMb ?? thread.heapLimitMb;
    const limit = heapLimitMb !== undefined ? ` (heap limit ${heapLimitMb} MB)` : '';
    return crashed(`${where} ran out of memory${limit}`, { reason: 'oom', message: String(error.message), ...base, ...(heapLimitMb !== undefined ? { heapLimitMb } : {}) }, error);
  }
  if (thread.protocolError !== undefined) {
    const problem = thread.protocolError;
    return crashed(`${where} broke the host protocol and was ended: ${problem}`, { reason: 'protocol', protocolError: problem, ...base });
  }
  // The thread's own words about this execution; a fatal error outranks the exit that follows it.
  const mine = thread.reports.filter((r) => r.k === k);
  const report = mine.find((r) => r.reason !== 'exit') ?? mine[0];
  if (report && report.reason !== 'exit' && report.error) {
    const cause = deserializeError(report.error);
    const what = report.reason === 'unhandled-rejection' ? 'an unhandled promise rejection' : 'an uncaught exception';
    return crashed(`${where} died of ${what}: ${shownControls(cause.message)}`, { reason: report.reason, message: cause.message, ...base }, cause);
  }
  if (isLeftBusy(thread.endedBy)) {
    const message = 'the pool ended it: it had not begun the execution a second after it was handed over, kept busy by what an earlier handler on it left running (so had the threads it was handed to before)';
    return crashed(`${where} did not run it: ${message}`, { reason: 'exit', message, ...base });
  }
  if (error !== undefined) {
    const message = error instanceof Error ? error.message : String(error);
    return crashed(`${where} died of an uncaught exception: ${shownControls(message)}`, { reason: 'uncaught-exception', message, ...base }, error);
  }
  const exitCode = thread.exitCode ?? report?.exitCode;
  const code = exitCode !== undefined ? ` with code ${exitCode}` : '';
  return crashed(`${where} exited${code} before the handler finished`, { reason: 'exit', ...base, ...exitCodeOf(exitCode) });
}

/**
 * The `reason` a thread's death is counted under (`kb.plugin_execution.runner.crashes`), whether
 * or not it was running an execution: what crashError would say of it.
 */
export function crashReason(thread: PoolThread): WorkerCrashDetails['reason'] {
  const error = thread.error as { code?: unknown } | undefined;
  if (error?.code === 'ERR_WORKER_OUT_OF_MEMORY') return 'oom';
  if (thread.protocolError !== undefined) return 'protocol';
  const report = thread.reports.find((r) => r.reason !== 'exit');
  if (report) return report.reason;
  return error !== undefined ? 'uncaught-exception' : 'exit';
}

/**
 * For an execution waiting for a thread when the thread started for it could not be made (Worker's
 * constructor threw: `thread` undefined) or died before it loaded its entry.
 */
export function startFailureError(error: unknown, thread: PoolThread | undefined, task: RunnerTask): WorkerCrashedError {
  const message = refusedByHostPermissions(error, 'worker') ?? (error instanceof Error ? error.message : error !== undefined ? String(error) : `exited with code ${thread?.exitCode}`);
  const details: WorkerCrashDetails = {
    reason: 'start-failed',
    message,
    pluginId: task.pluginId,
    handlerId: task.handlerId,
    ...(thread ? { runnerId: `thread:${thread.id}` } : {}),
    ...exitCodeOf(thread?.exitCode),
  };
  return new WorkerCrashedError(`A worker thread failed to start, so handler "${task.handlerId}" of plugin "${task.pluginId}" could not run: ${message}${systemLimit(error)}`, {
    details: { ...details },
    ...(error !== undefined ? { cause: error } : {}),
  });
}

/** What the system's own code for a refused thread (EMFILE, EAGAIN, uv_cwd) means, to say with it; '' for another. */
function systemLimit(error: unknown): string {
  const said = `${(error as { code?: unknown })?.code ?? ''} ${error instanceof Error ? error.message : ''}`;
  // Node starts no thread while the process's working directory is gone (Node 20 says only "ENOENT: … uv_cwd").
  if (/\buv_cwd\b/.test(said)) return " (the host's working directory was removed: no worker thread starts until the host changes to one that exists, process.chdir())";
  if (/\bE[MN]FILE\b/.test(said)) return ' (the host is out of file descriptors: raise its open-file limit, ulimit -n or LimitNOFILE=, or lower maxThreads)';
  if (/\bEAGAIN\b/.test(said)) return " (the system refused a new thread: too many threads or processes for this user, ulimit -u, or in the host's cgroup, pids.max, or not enough memory for its stack)";
  return '';
}

/** Why the pool cannot be made: its first threads could not start (host permissions, the system, a flag of `execArgv`). */
export function noThreadStarts(error: unknown): ValidationError {
  const code = (error as { code?: unknown })?.code;
  const refused = refusedByHostPermissions(error, 'worker');
  if (refused) return new ValidationError(`The worker-pool backend cannot run here: ${refused}`, { details: { phase: 'options', code }, cause: error });
  // The system's own word for it says nothing of which option, if any, asked too much. Node
  // throws ERR_WORKER_INIT_FAILED with libuv's code as its message ("EAGAIN").
  const refusedBySystem = /\bEAGAIN\b/.test(`${code ?? ''} ${(error as Error)?.message ?? ''}`);
  const why = refusedBySystem ? ' (the system refused a new thread: too many threads or processes, ulimit -u or a cgroup\'s pids.max, or not enough memory for its stack: see resourceLimits.stackSizeMb)' : '';
  // Node names the flags it refuses, not the option they came from.
  const execArgv = code === 'ERR_WORKER_INVALID_EXEC_ARGV' ? 'execArgv: ' : '';
  const what = refusedBySystem ? 'The worker-pool backend cannot start' : 'Invalid worker-pool backend options';
  return new ValidationError(`${what}: ${execArgv}no worker thread can be started: ${(error as Error)?.message ?? String(error)}${why}`, {
    details: { phase: 'options', code: code ?? null, ...(execArgv ? { path: 'execArgv' } : {}) },
    cause: error,
  });
}

function exitCodeOf(exitCode: number | undefined): { exitCode?: number } {
  return exitCode !== undefined ? { exitCode } : {};
}
