import type { ChannelContext, HandlerContext, HandlerLogger } from '../define-handler.js';
import { isSerializedError } from '../error-wire.js';
import { AbortedError, handlerThrew, isExecutionError } from '../errors.js';
import { toWireValue } from '../wire-value.js';
import { cutText } from '../cut-text.js';
import { MAX_LOG_MESSAGE } from '../protocol.js';
import type { PermissionSpec } from '../host/permissions.js';
import type { Platform } from '../host/platform-gateway.js';
import type { ContextDescriptor, LogEntry } from '../host/request.js';
import { validateWithForeignSchema } from '../validation.js';
import { wallClockMs } from '../wall-clock.js';
import { classCallRefusal } from './entry-module.js';
import { loadedHandler, loadHandler } from './handler-loader.js';

/**
 * Everything a runner needs to execute one handler. Plain data: it is what the host sends to a
 * worker thread or child process, and what the in-process backend hands to `runHandler` directly.
 */
export interface RunnerTask {
  executionId: string;
  pluginId: string;
  handlerId: string;
  pluginRoot: string;
  entryPath: string;
  exportName: string;
  input: unknown;
  context: ContextDescriptor;
  /** The workspace directory, or undefined when workspaces are off. */
  workspaceDir: string | undefined;
  /** What the handler declared (and was granted): the most it may use. */
  permissions: PermissionSpec;
  timeoutMs: number;
  memoryMb: number | undefined;
  /**
   * The plugin's generation (`RegisteredPlugin.generation`, bumped by `reloadPlugin`): a runner
   * that has imported another generation of the plugin imports this one as a fresh module
   * instance. Absent: 0.
   */
  generation?: number;
  /**
   * Which load of the plugin's code (ResolvedHandler.moduleKey, unique in the host's process): a
   * runner imports each under a URL of its own, and reuses it for executions of the same load.
   * Absent: the generation.
   */
  moduleKey?: number;
  /** Set for WebSocket channel handlers. */
  channel?: { connectionId: string; path: string };
  /** The W3C traceparent of the execution's span (`ctx.traceparent`); undefined when not traced. */
  traceparent?: string | undefined;
  /** Past this time (wallClockMs), the handler begins only if the host still says it may (ExecuteOptions.beginBy). */
  beginBy?: number | undefined;
}

/** What a runner provides around the handler: its side of logs, events, platform and channel. */
export interface RuntimeEnvironment {
  /** Read only when the handler reads `ctx.signal` (it may be a getter that creates the signal then). */
  readonly signal: AbortSignal;
  log(level: LogEntry['level'], message: string, fields: Record<string, unknown> | undefined): void;
  emit(event: unknown): void;
  /** Read only when the handler reads `ctx.platform` (it may be a getter that builds it then). */
  readonly platform: Platform;
  /** Performs `ctx.channel.<method>(...args)`; absent when the task has no channel. */
  channelCall?: (method: string, args: unknown[]) => Promise<unknown>;
  /** Asks the host whether a handler whose task's `beginBy` has passed may still begin (false: the host has stopped it). */
  mayBegin?: () => boolean | Promise<boolean>;
}

/**
 * Load, validate input, build `ctx`, run. The one place handler code is called, on every backend.
 * Resolves with what the handler returned; rejects with an ExecutionError (HandlerError for
 * anything the handler threw, VALIDATION_ERROR for bad input, HANDLER_NOT_FOUND for a missing export).
 */
export async function runHandler(task: RunnerTask, env: RuntimeEnvironment): Promise<unknown> {
  // Loaded before: no promise to wait for (most executions of a warm runner).
  let handler = loadedHandler(task);
  if (handler === undefined) {
    handler = await loadHandler(task);
    // Stopped while its modules loaded (a slow top-level await): its caller has been told, so the
    // handler must not begin now (the load path only: a warm one has nothing to wait for).
    if (env.signal.aborted) throw stoppedWhileLoading(env.signal.reason);
  }
  // Not ready by the time its host gave it (a long load, a process stopped meanwhile): the host says whether it still may begin.
  if (task.beginBy !== undefined && wallClockMs() > task.beginBy && !(await env.mayBegin?.())) throw notBegun();
  const input = handler.schema === undefined ? task.input : validInput(handler.schema, task);
  const ctx = new ExecutionContext(task, env);
  try {
    return await handler.run(input, ctx);
  } catch (error) {
    throw classCallRefusal(error, task) ?? handlerThrew(error);
  }
}

/** The input as the handler's schema parses it. The schema is plugin code: what it throws is the handler's (HANDLER_ERROR), bar a refusal (VALIDATION_ERROR). */
function validInput(schema: unknown, task: RunnerTask): unknown {
  try {
    return validateWithForeignSchema(schema, task.input, `handler "${task.handlerId}" of plugin "${task.pluginId}"`);
  } catch (error) {
    throw handlerThrew(error, ['VALIDATION_ERROR']);
  }
}

function stoppedWhileLoading(reason: unknown): unknown {
  return isExecutionError(reason) ? reason : new AbortedError("The execution was stopped while its handler's modules loaded; the handler did not run", { details: { phase: 'running' } });
}

function notBegun(): AbortedError {
  return new AbortedError('The handler was not begun: the time it had to begin by (ExecuteOptions.beginBy) had passed', { details: { phase: 'running' } });
}

function createLogger(env: RuntimeEnvironment): HandlerLogger {
  const log = (level: LogEntry['level']) => (message: unknown, fields?: unknown) => {
    env.log(level, cutText(typeof message === 'string' ? message : logText(message), MAX_LOG_MESSAGE), logFields(fields));
  };
  return Object.freeze({ debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') });
}

/**
 * A log line's fields, an object on every backend: what is not one (`logger.info('user', name)`,
 * console-style, from plain JavaScript) is kept as `{ value }`; null or undefined is none.
 */
function logFields(fields: unknown): Record<string, unknown> | undefined {
  if (fields === undefined || fields === null) return undefined;
  const value = toWireValue(fields);
  return typeof fields === 'object' && !Array.isArray(fields) && value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : { value };
}

/**
 * `ctx`. A class, not an object literal with getters: it is made for every execution, and a
 * literal's getters are new functions each time, so V8 gives every such object a hidden class of
 * its own (a few µs, and most of a runner's garbage-collection time, per execution). The signal,
 * the logger and the platform are built on first read: many handlers use none of them.
 */
class ExecutionContext implements HandlerContext<Platform> {
  readonly executionId: string;
  readonly pluginId: string;
  readonly handlerId: string;
  readonly context: ContextDescriptor;
  readonly workspace: { readonly dir: string } | undefined;
  readonly traceparent: string | undefined;
  /** Its own property (not a method), so that `const { emit } = ctx` works. */
  readonly emit: (event: unknown) => void;
  /** Set for channel handlers only (absent, not undefined, on the others). */
  declare readonly channel?: ChannelContext;
  readonly #env: RuntimeEnvironment;
  #logger: HandlerLogger | undefined;

  constructor(task: RunnerTask, env: RuntimeEnvironment) {
    this.executionId = task.executionId;
    this.pluginId = task.pluginId;
    this.handlerId = task.handlerId;
    this.context = task.context;
    this.workspace = task.workspaceDir === undefined ? undefined : Object.freeze({ dir: task.workspaceDir });
    this.traceparent = task.traceparent;
    this.emit = (event: unknown) => env.emit(event);
    if (task.channel && env.channelCall) {
      (this as { channel?: ChannelContext }).channel = createChannelContext(task.channel, (method, args) => env.channelCall!(method, args));
    }
    this.#env = env;
    Object.freeze(this);
  }

  get signal(): AbortSignal {
    return this.#env.signal;
  }

  get logger(): HandlerLogger {
    return (this.#logger ??= createLogger(this.#env));
  }

  get platform(): Platform {
    return this.#env.platform;
  }
}

/** A readable line for `ctx.logger.info(value)` with a non-string value (not `[object Object]`). */
function logText(value: unknown): string {
  const wired = toWireValue(value);
  if (typeof wired === 'string') return wired;
  if (isSerializedError(wired)) return `${wired.name}: ${wired.message}`;
  try {
    return JSON.stringify(wired) ?? String(wired);
  } catch {
    return String(wired);
  }
}

function createChannelContext(info: { connectionId: string; path: string }, callRuntime: (method: string, args: unknown[]) => Promise<unknown>): ChannelContext {
  // Async on every backend: arguments that cannot cross (a function) are a rejection, as out of
  // process, not a throw where in-process copies them (a `.catch()` on the call would miss it).
  const call = (method: string, args: unknown[]): Promise<unknown> => {
    try {
      return callRuntime(method, args);
    } catch (error) {
      return Promise.reject(error);
    }
  };
  return Object.freeze({
    connectionId: info.connectionId,
    path: info.path,
    send: (data: unknown) => call('send', [data]) as Promise<boolean>,
    sendTo: (connectionId: string, data: unknown) => call('sendTo', [connectionId, data]) as Promise<boolean>,
    broadcast: (data: unknown, options?: { exclude?: string[]; scope?: 'channel' | 'path' }) => call('broadcast', [data, options ?? {}]) as Promise<number>,
    close: (code?: number, reason?: string, connectionId?: string) => call('close', [code, reason, connectionId]) as Promise<boolean>,
  });
}
