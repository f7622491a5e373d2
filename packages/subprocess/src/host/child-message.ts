import { describeShape, runnerMessageProblem, type RunnerResult } from '@kb-labs/plugin-execution-core/backend-kit';

const CRASH_REASONS = new Set(['uncaught-exception', 'unhandled-rejection']);

/**
 * Shape check of a message from a child: core's check of the protocol's messages, plus the
 * child's last words and its own stop at its time limit. Returns the problem, or undefined when the message is acceptable.
 */
export function childMessageProblem(message: unknown): string | undefined {
  const m = message as Record<string, unknown> | null;
  if (typeof m === 'object' && m !== null && m.type === 'stopped-itself') return undefined;
  if (typeof m !== 'object' || m === null || m.type !== 'crash') return runnerMessageProblem(message);
  if (typeof m.reason !== 'string' || !CRASH_REASONS.has(m.reason)) return `crash with an unknown reason ${describeShape(m.reason)}`;
  if (typeof m.error !== 'object' || m.error === null) return 'crash without an error';
  return undefined;
}

/**
 * A result the host may take even when it reads it past the time limit (its own loop held up):
 * not the handler giving up at the limit the child keeps itself when its host does not stop it
 * (a TIMEOUT it rethrew, HANDLER_ERROR with `details.code` TIMEOUT), which is the host's TIMEOUT.
 */
export function answerInItsOwnRight(result: RunnerResult): boolean {
  return result.ok || (result.error.details as { code?: unknown } | undefined)?.code !== 'TIMEOUT';
}
