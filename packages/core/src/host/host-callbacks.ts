import { processShared } from './process-shared.js';
import { whenRejected } from './when-rejected.js';

/**
 * What an `async` onLog / onEvent / onStart returns: its rejection is handled as a throw is, not left
 * unhandled, which Node makes the host process's end.
 */
export function settleQuietly(returned: unknown, which: HostCallback): void {
  whenRejected(returned, (error) => callbackFailed(which, error));
}

/** Which callbacks' failures the process has been warned of, by every copy of core in it (both builds, two installs). */
const callbacksWarned = processShared('callbacks-warned', () => new Set<string>());

/** The execute() callbacks a host gives: what they throw never fails the execution. */
export type HostCallback = 'onLog' | 'onEvent' | 'onStart';

/** A host's onLog / onEvent / onStart threw or rejected: the execution goes on; the first time per callback, a process warning says so (a bug in a log sink should not vanish). */
export function callbackFailed(which: HostCallback, error: unknown): void {
  if (callbacksWarned.has(which)) return;
  callbacksWarned.add(which);
  let what: string;
  try {
    what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  } catch {
    what = 'a value that cannot be shown';
  }
  process.emitWarning(`An execute() ${which} callback threw or rejected (${what.slice(0, 500)}); the execution went on without it. Said once per process.`, {
    code: 'KB_PLUGIN_CALLBACK_FAILED',
  });
}
