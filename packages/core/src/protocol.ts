import { deserializeError, type SerializedError } from './error-wire.js';
import { toHandlerError } from './errors.js';
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

/** Turn a runner's result message into the value or the error the host reports. */
export function unwrapRunnerResult(result: RunnerResult): unknown {
  if (result.ok) return result.data;
  const error = deserializeError(result.error);
  throw toHandlerError(error);
}
