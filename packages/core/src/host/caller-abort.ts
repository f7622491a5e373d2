import { AbortedError, ShuttingDownError, TimeoutError, isExecutionError, type KnownExecutionError } from '../errors.js';
import type { RunnerTask } from '../runner/handler-runtime.js';

/**
 * The error of a caller's abort: ABORTED. A caller that aborts with a stop of this library's own
 * (a queue worker stopping an execution for its calling host: ABORTED, or TIMEOUT or SHUTTING_DOWN
 * when that host's time limit or shutdown ended it) keeps its code and words; any other reason is
 * the caller's business, and the message stays ours.
 */
export function callersAbort(task: RunnerTask, signal: AbortSignal, taken: boolean): KnownExecutionError {
  const reason: unknown = signal.reason;
  // Handed to the backend but taken by no runner yet (a queue task still in the stream): it never ran.
  const phase = taken ? 'running' : 'queued';
  // A stop this library made (a queue worker cancelling for its caller's time limit or shutdown) keeps its code.
  const Stop = isExecutionError(reason) ? STOPS[reason.code as keyof typeof STOPS] : undefined;
  if (Stop) return new Stop((reason as KnownExecutionError).message, { details: { ...(reason as KnownExecutionError).details, phase } as never, cause: reason });
  const never = taken ? '' : ' before any runner took it; it never started';
  return new AbortedError(`Execution of "${task.handlerId}" (plugin "${task.pluginId}") aborted by the caller${never}`, { details: { phase } });
}

const STOPS = { ABORTED: AbortedError, TIMEOUT: TimeoutError, SHUTTING_DOWN: ShuttingDownError } as const;

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError('Execution aborted before it started', { details: { phase: 'queued' } });
}
