/**
 * What crosses between the host and a child. The child's script imports this file: nothing here
 * may import more than core's runner entry (which is bundled into that script), or every child
 * start loads it too (the host's checks of these messages are in host/child-message.ts).
 */
import type { HostToRunner, RunnerTask, SerializedError } from '@kb-labs/plugin-execution-core/runner';

/**
 * The core protocol's `run`, plus what only a child process needs: the environment variables
 * the handler was granted (set after Node has booted, see child-env.ts).
 */
export interface ChildRunMessage {
  type: 'run';
  task: RunnerTask;
  env: Record<string, string>;
}

export type HostToChild = Exclude<HostToRunner, { type: 'run' }> | ChildRunMessage;

/**
 * The exit code of a child whose channel to the host closed under it while it ran: the host gone,
 * or (the host still there to see it) the plugin closed fd 3, which the host reports as `protocol`.
 */
export const EXIT_CHANNEL_CLOSED = 71;

/**
 * The child's last words, written just before Node ends it for an error outside the handler's
 * promise, so that the host reports why (as a worker thread's do) rather than only "exit code 1".
 */
export interface ChildCrashMessage {
  type: 'crash';
  reason: 'uncaught-exception' | 'unhandled-rejection';
  error: SerializedError;
}

/**
 * The child stopped its handler at its time limit itself, its host not there to (stopped, its loop
 * held up): the host, once it runs, reports its own TIMEOUT, not how the child then ended.
 */
export interface ChildStoppedItselfMessage {
  type: 'stopped-itself';
}
