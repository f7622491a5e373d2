import { AbortedError, isExecutionError, type KnownExecutionError } from '../errors.js';
import type { RunnerTask } from '../runner/handler-runtime.js';
import { onAbort } from './abort-listeners.js';
import { settlesWithin } from '../settles-within.js';
import { SLOW_RELEASE_MS } from './slow-releases.js';
import { clearTimeout, setTimeout } from '../real-timers.js';

/**
 * The ABORTED of a caller's abort. A caller that aborts with an ABORTED error of its own (a queue
 * worker stopping an execution its calling host gave up on) keeps its words; any other reason is
 * the caller's business, and the message stays ours. (A worker stops one for its host's TIMEOUT as
 * an abort too: its handler gets ctx.signal and the cancel grace, where a local TIMEOUT stops it at once.)
 */
export function callersAbort(task: RunnerTask, signal: AbortSignal, taken: boolean): KnownExecutionError {
  // Handed to the backend but taken by no runner yet (a queue task still in the stream): it never ran.
  const phase = taken ? 'running' : 'queued';
  try {
    const reason: unknown = signal.reason;
    if (isExecutionError(reason) && reason.code === 'ABORTED') return new AbortedError(reason.message, { details: { ...reason.details, phase }, cause: reason });
  } catch {
    // A reason whose words cannot be read (a getter or a Proxy that throws): thrown here, inside the
    // signal's 'abort' dispatch, it would be the host's uncaught exception, and the execution would
    // run on to its time limit. The message is ours, as for any other reason.
  }
  const never = taken ? '' : ' before any runner took it; it never started';
  return new AbortedError(`Execution of "${task.handlerId}" (plugin "${task.pluginId}") aborted by the caller${never}`, { details: { phase } });
}

const abortedBeforeStart = (): AbortedError => new AbortedError('Execution aborted before it started', { details: { phase: 'queued' } });

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortedBeforeStart();
}

/**
 * How long a stopped wait still waits for what it was taking. As a rule it comes a moment later (the
 * workspace's directory made, its path being checked, when the abort came) and is given back before
 * the caller hears of the stop, so that nothing it made outlives the result; one that does not come
 * by then (a file system that does not answer) is let go, and given back whenever it comes.
 */
const GIVE_BACK_WAIT_MS = 1000;

/**
 * What `taking` gives, or ABORTED (`queued`) once the caller aborts while it is still pending (a
 * workspace whose making hangs: a file system that does not answer, a host's WorkspaceManager that
 * never settles), or the error given to the `stop` handed to `settingStop` (shutdown). What it
 * gives after a stop is handed to `giveBack`: awaited when it comes within GIVE_BACK_WAIT_MS, else
 * handed to `track` (shutdown waits for what it tracks).
 */
export function untilStopped<T>(
  taking: Promise<T>,
  signal: AbortSignal | undefined,
  settingStop: (stop: (error: unknown) => void) => void,
  giveBack: (taken: T) => unknown,
  track: (givingBack: Promise<unknown>) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let stoppedBy: { error: unknown } | undefined;
    let settled = false;
    let letGo: ReturnType<typeof setTimeout> | undefined;
    let stopListening: (() => void) | undefined;
    const end = (error: unknown) => {
      clearTimeout(letGo);
      if (settled) return;
      settled = true;
      reject(error);
    };
    const stop = (error: unknown) => {
      if (stoppedBy || settled) return;
      stoppedBy = { error };
      // Stopped by shutdown while what it takes never comes: the caller's signal, which may outlive
      // the host's backend (one for a whole batch, a server's own), keeps no listener of it.
      stopListening?.();
      letGo = setTimeout(() => end(error), GIVE_BACK_WAIT_MS);
      // Tracked from now, not only once it comes: a shutdown() meanwhile waits for it (bounded), and
      // nothing is made after it resolved. One that takes longer is a hang, not a release (health).
      track(settlesWithin(taking, SLOW_RELEASE_MS, false));
    };
    settingStop(stop);
    try {
      stopListening = signal ? onAbort(signal, () => stop(abortedBeforeStart())) : undefined;
    } catch (error) {
      // A signal-like object of the host's whose addEventListener throws: the call fails with
      // that, and what is being taken (a workspace already being made) is given back first.
      stop(error);
    }
    taking.then(
      (taken) => {
        stopListening?.();
        if (!stoppedBy) {
          settled = true;
          return resolve(taken);
        }
        const { error } = stoppedBy;
        const givingBack = Promise.resolve(taken).then(giveBack).catch(() => undefined);
        track(givingBack);
        void givingBack.then(() => end(error));
      },
      (error: unknown) => {
        stopListening?.();
        end(stoppedBy ? stoppedBy.error : error);
      },
    );
  });
}

/**
 * `waiting`, or ABORTED (`queued`) once the caller aborts while it is still pending, or the error
 * given to the `stop` handed to `settingStop` (shutdown). For waits that take nothing: an
 * execution's turn behind one whose workspace is still being made, the plugins loading on a
 * backend's first use (a plugin folder slow to read holds no caller that gave up). Those waiting
 * are told in the order they called, with a signal or without (admission order).
 */
export function untilAborted(waiting: Promise<void>, signal: AbortSignal | undefined, settingStop: (stop: (error: unknown) => void) => void = () => {}): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortedBeforeStart());
  return new Promise<void>((resolve, reject) => {
    const stop = (error: unknown) => {
      stopListening?.();
      reject(error);
    };
    const stopListening = signal ? onAbort(signal, () => stop(abortedBeforeStart())) : undefined;
    settingStop(stop);
    waiting.then(() => {
      stopListening?.();
      resolve();
    }, stop);
  });
}
