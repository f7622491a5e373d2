import { deserializeError, type SerializedError } from './error-wire.js';
import { handlerThrew, toHandlerError } from './errors.js';
import type { LogEntry } from './host/request.js';
import type { RunnerTask } from './runner/handler-runtime.js';

/**
 * The host⇄runner protocol, shared by every out-of-process backend (worker threads, child
 * processes). Transport is the backend's business (a MessagePort, framed pipe bytes); the
 * messages live here, and their two endpoints in runner/runner-session.ts and host/host-session.ts.
 */
export const PROTOCOL_VERSION = 1;

export type HostToRunner =
  | { type: 'run'; task: RunnerTask }
  | { type: 'cancel'; reason: SerializedError }
  | { type: 'rpc-reply'; id: number; ok: true; value: unknown }
  | { type: 'rpc-reply'; id: number; ok: false; error: SerializedError };

export type RunnerToHost =
  | { type: 'ready'; version: number; pid?: number }
  | { type: 'log'; level: LogEntry['level']; message: string; fields?: Record<string, unknown> }
  | { type: 'event'; event: unknown }
  | { type: 'rpc'; id: number; target: 'platform' | 'channel'; service: string; method: string; args: unknown[] }
  | RunnerResult;

export type RunnerResult = { type: 'result'; ok: true; data: unknown } | { type: 'result'; ok: false; error: SerializedError };

export { unserializableError } from './wire-clone.js';

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
