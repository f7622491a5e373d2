import { AbortedError, isExecutionError, type KnownExecutionError } from '../errors.js';
import type { RunnerTask } from '../runner/handler-runtime.js';
import { onAbort } from './abort-listeners.js';

/**
 * The ABORTED of a caller's abort. A caller that aborts with an ABORTED error of its own (a queue
 * worker stopping an execution its calling host gave up on) keeps its words; any other reason is
 * the caller's business, and the message stays ours. (A worker stops one for its host's TIMEOUT as
 * an abort too: its handler gets ctx.signal and the cancel grace, where a local TIMEOUT stops it at once.)
 */
export function callersAbort(task: RunnerTask, signal: AbortSignal, taken: boolean): KnownExecutionError {
  const reason: unknown = signal.reason;
  // Handed to the backend but taken by no runner yet (a queue task still in the stream): it never ran.
  const phase = taken ? 'running' : 'queued';
  if (isExecutionError(reason) && reason.code === 'ABORTED') return new AbortedError(reason.message, { details: { ...reason.details, phase }, cause: reason });
  const never = taken ? '' : ' before any runner took it; it never started';
  return new AbortedError(`Execution of "${task.handlerId}" (plugin "${task.pluginId}") aborted by the caller${never}`, { details: { phase } });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError('Execution aborted before it started', { details: { phase: 'queued' } });
}

/**
 * What `taking` gives, or ABORTED (`queued`) once the caller aborts while it is still pending (a
 * workspace whose making hangs: a file system that does not answer, a host's WorkspaceManager that
 * never settles), or the error given to the `stop` handed to `settingStop` (shutdown). What it
 * gives after that is handed to `giveBack`.
 */
export function untilStopped<T>(taking: Promise<T>, signal: AbortSignal | undefined, settingStop: (stop: (error: unknown) => void) => void, giveBack: (taken: T) => unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let abandoned = false;
    const stop = (error: unknown) => {
      if (abandoned) return;
      abandoned = true;
      reject(error);
    };
    settingStop(stop);
    const stopListening = signal ? onAbort(signal, () => stop(new AbortedError('Execution aborted before it started', { details: { phase: 'queued' } }))) : undefined;
    taking.then(
      (taken) => {
        stopListening?.();
        if (!abandoned) return resolve(taken);
        void Promise.resolve(taken).then(giveBack).catch(() => undefined);
      },
      (error: unknown) => {
        stopListening?.();
        stop(error);
      },
    );
  });
}
