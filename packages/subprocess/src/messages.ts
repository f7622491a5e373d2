import type { HostToRunner, RunnerTask, SerializedError } from '@kb-labs/plugin-execution-core/runner';
import { describeShape, runnerMessageProblem } from '@kb-labs/plugin-execution-core/backend-kit';

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
 * The child's last words, written just before Node ends it for an error outside the handler's
 * promise, so that the host reports why (as a worker thread's do) rather than only "exit code 1".
 */
/**
 * The exit code of a child whose channel to the host closed under it while it ran: the host gone,
 * or (the host still there to see it) the plugin closed fd 3, which the host reports as `protocol`.
 */
export const EXIT_CHANNEL_CLOSED = 71;

export interface ChildCrashMessage {
  type: 'crash';
  reason: 'uncaught-exception' | 'unhandled-rejection';
  error: SerializedError;
}

const CRASH_REASONS = new Set(['uncaught-exception', 'unhandled-rejection']);

/**
 * Shape check of a message from a child: core's check of the protocol's messages, plus the
 * child's last words. Returns the problem, or undefined when the message is acceptable.
 */
export function childMessageProblem(message: unknown): string | undefined {
  const m = message as Record<string, unknown> | null;
  if (typeof m !== 'object' || m === null || m.type !== 'crash') return runnerMessageProblem(message);
  if (typeof m.reason !== 'string' || !CRASH_REASONS.has(m.reason)) return `crash with an unknown reason ${describeShape(m.reason)}`;
  if (typeof m.error !== 'object' || m.error === null) return 'crash without an error';
  return undefined;
}
