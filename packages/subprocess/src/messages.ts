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
 * The child's last words, written just before Node ends it for an error outside the handler's
 * promise, so that the host reports why (as a worker thread's do) rather than only "exit code 1".
 */
export interface ChildCrashMessage {
  type: 'crash';
  reason: 'uncaught-exception' | 'unhandled-rejection';
  error: SerializedError;
}

const CRASH_REASONS = new Set(['uncaught-exception', 'unhandled-rejection']);

const LEVELS = new Set(['debug', 'info', 'warn', 'error']);

/**
 * Shape check of a message from a child. The child runs untrusted code that can write to the
 * protocol pipe itself, so nothing it sends is used before this says it is well-formed.
 * Returns the problem, or undefined when the message is acceptable.
 */
export function runnerMessageProblem(message: unknown): string | undefined {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return `message is not an object (${describe(message)})`;
  const m = message as Record<string, unknown>;
  switch (m.type) {
    case 'ready':
      return typeof m.version === 'number' ? undefined : 'ready without a numeric version';
    case 'log':
      if (typeof m.level !== 'string' || !LEVELS.has(m.level)) return `log with an unknown level ${describe(m.level)}`;
      if (typeof m.message !== 'string') return 'log without a string message';
      if (m.fields !== undefined && (typeof m.fields !== 'object' || m.fields === null)) return 'log with non-object fields';
      return undefined;
    case 'event':
      return undefined;
    case 'rpc':
      if (!Number.isSafeInteger(m.id)) return 'rpc without an integer id';
      if (m.target !== 'platform' && m.target !== 'channel') return `rpc with an unknown target ${describe(m.target)}`;
      if (typeof m.service !== 'string' || typeof m.method !== 'string') return 'rpc without string service and method';
      if (!Array.isArray(m.args)) return 'rpc without an args array';
      return undefined;
    case 'result':
      if (typeof m.ok !== 'boolean') return 'result without a boolean ok';
      return undefined;
    case 'crash':
      if (typeof m.reason !== 'string' || !CRASH_REASONS.has(m.reason)) return `crash with an unknown reason ${describe(m.reason)}`;
      if (typeof m.error !== 'object' || m.error === null) return 'crash without an error';
      return undefined;
    default:
      return `unknown message type ${describe(m.type)}`;
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 40));
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}
