import { deserializeError, type SerializedError } from './error-wire.js';
import { handlerThrew, toHandlerError } from './errors.js';
import type { LogEntry } from './host/request.js';
import type { RunnerTask } from './runner/handler-runtime.js';
import { toWireValue, withinOneWalk } from './wire-value.js';

/**
 * The host⇄runner protocol, shared by every out-of-process backend (worker threads, child
 * processes). Transport is the backend's business (a MessagePort, framed pipe bytes); the
 * messages live here, and their two endpoints in runner/runner-session.ts and host/host-session.ts.
 */
export const PROTOCOL_VERSION = 1;

export type HostToRunner =
  | { type: 'run'; task: RunnerTask }
  | { type: 'cancel'; reason: SerializedError }
  /** The answer to `may-begin`: whether the handler may begin now. */
  | { type: 'begin'; ok: boolean }
  | { type: 'rpc-reply'; id: number; ok: true; value: unknown }
  | { type: 'rpc-reply'; id: number; ok: false; error: SerializedError };

export type RunnerToHost =
  | { type: 'ready'; version: number; pid?: number }
  | { type: 'log'; level: LogEntry['level']; message: string; fields?: Record<string, unknown> }
  | { type: 'event'; event: unknown }
  | { type: 'rpc'; id: number; target: 'platform' | 'channel'; service: string; method: string; args: unknown[] }
  /** Its task's `beginBy` passed before the handler began: may it still begin? (ExecuteOptions.beginBy) */
  | { type: 'may-begin' }
  | RunnerResult;

export type RunnerResult = { type: 'result'; ok: true; data: unknown } | { type: 'result'; ok: false; error: SerializedError };

export { taskUnserializableError, unserializableError } from './wire-clone.js';

/** The longest `ctx.logger` message, in characters: the runtime cuts a longer one, and the host cuts one a runner sent past the runtime. */
export const MAX_LOG_MESSAGE = 64 * 1024;

/**
 * A `ctx.logger` message as the runtime would have cut it (its own cut, and what it says of it, let
 * through): one longer than that was sent past the runtime (plugin code on the runner's channel, a
 * queue worker's message forged or of another version), and the host cuts it.
 */
export function hostLogMessage(text: string): string {
  return text.length > MAX_LOG_MESSAGE + 64 ? `${text.slice(0, MAX_LOG_MESSAGE)}… [truncated by the host]` : text;
}

/**
 * A log line's fields as the runtime would have cut them (toWireValue): what it cuts passes as it
 * is; fields a runner sent past the runtime (plugin code on the runner's channel) bigger than that,
 * or listing one object many times over (a few KB that JSON writes out as 100^8 objects), the host cuts.
 */
export function hostLogFields(fields: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  // A list (which the runtime sends as `{ value: [...] }`) is no record: cut and wrapped as the runtime does.
  if (fields === undefined || (!Array.isArray(fields) && withinOneWalk(fields))) return fields;
  const cut = toWireValue(fields);
  return typeof cut === 'object' && cut !== null && !Array.isArray(cut) ? (cut as Record<string, unknown>) : { value: cut };
}

const LEVELS = new Set(['debug', 'info', 'warn', 'error']);

/**
 * Shape check of a message a runner sent. A runner runs untrusted code, which can reach its
 * channel (a child's protocol pipe; a thread's port, through the runner's own calls), so nothing
 * it sends is used before this says it is well-formed. Returns the problem, or undefined.
 */
export function runnerMessageProblem(message: unknown): string | undefined {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return `message is not an object (${describeShape(message)})`;
  const m = message as Record<string, unknown>;
  switch (m.type) {
    case 'ready':
      return typeof m.version === 'number' ? undefined : 'ready without a numeric version';
    case 'log':
      if (typeof m.level !== 'string' || !LEVELS.has(m.level)) return `log with an unknown level ${describeShape(m.level)}`;
      if (typeof m.message !== 'string') return 'log without a string message';
      if (m.fields !== undefined && (typeof m.fields !== 'object' || m.fields === null)) return 'log with non-object fields';
      return undefined;
    case 'event':
    case 'may-begin':
      return undefined;
    case 'rpc':
      if (!Number.isSafeInteger(m.id)) return 'rpc without an integer id';
      if (m.target !== 'platform' && m.target !== 'channel') return `rpc with an unknown target ${describeShape(m.target)}`;
      if (typeof m.service !== 'string' || typeof m.method !== 'string') return 'rpc without string service and method';
      if (!Array.isArray(m.args)) return 'rpc without an args array';
      return undefined;
    case 'result':
      if (typeof m.ok !== 'boolean') return 'result without a boolean ok';
      if (!m.ok && (typeof m.error !== 'object' || m.error === null)) return 'failed result without an error object';
      return undefined;
    default:
      return `unknown message type ${describeShape(m.type)}`;
  }
}

/** A value named in a protocol problem: a short string as itself, anything else by its kind. */
export function describeShape(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 40));
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}

/**
 * Turn a runner's result message into the value or the error the host reports. A runner that
 * runs plugin code (a thread, a child process) reports the handler's own errors, and a plugin
 * can forge its message: only the codes a runner's runtime or handler may report pass
 * (handlerThrew; HANDLER_NOT_FOUND too, for a module without the export), so that a TIMEOUT or a
 * WORKER_CRASHED is always the host's own finding. `trusted`: a runner whose results are the
 * host's own kind (a queue worker's, from its local backend): every code passes.
 */
export function unwrapRunnerResult(result: RunnerResult, options: { trusted?: boolean } = {}): unknown {
  if (result.ok) return result.data;
  const error = deserializeError(result.error);
  throw options.trusted ? toHandlerError(error) : handlerThrew(error, ['HANDLER_NOT_FOUND']);
}
