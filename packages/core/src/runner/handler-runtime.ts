import type { Stats } from 'node:fs';
import type { ChannelContext, HandlerContext, HandlerLogger } from '../define-handler.js';
import { functionsOf, isDefinedHandler } from '../define-handler.js';
import { isSerializedError } from '../error-wire.js';
import { AbortedError, HandlerError, HandlerNotFoundError, handlerThrew, isExecutionError, toHandlerError } from '../errors.js';
import { toWireValue } from '../wire-value.js';
import { MAX_LOG_MESSAGE } from '../protocol.js';
import type { PermissionSpec } from '../host/permissions.js';
import type { Platform } from '../host/platform-gateway.js';
import type { ContextDescriptor, LogEntry } from '../host/request.js';
import { validateWithForeignSchema } from '../validation.js';
import { wallClockMs } from '../wall-clock.js';
import { loadError } from './load-errors.js';
import { importNamespace, refuseBackslashPath, refuseClassExport, refuseLinkOutOfFolder, refuseNonModuleFile } from './entry-module.js';
import { handlerModuleUrl, importFailed, retryUrl } from './plugin-generations.js';
import { passingShortage } from '../passing-shortage.js';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
// node:fs's callback form: node:fs is loaded with Node itself, node:fs/promises is not (~5 ms).
const { access, stat } = process.getBuiltinModule('node:fs');

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

type HandlerFunction = (input: unknown, ctx: HandlerContext) => unknown;
interface LoadedHandler {
  run: HandlerFunction;
  schema: unknown;
  /** The load of the plugin's code it was imported for (loadOf). */
  load: number;
}

/** Which load of its plugin's code a task runs: its moduleKey, else (a task of an older host) its generation. */
function loadOf(task: RunnerTask): number {
  return task.moduleKey ?? task.generation ?? 0;
}

let loadingListener: ((loading: boolean) => void) | undefined;

/**
 * Be told when this thread (or process) starts and ends loading a handler's modules. The worker
 * pool holds back ending a thread meanwhile: Node's module loader reads the files through
 * descriptors shared with the whole process, and a thread ended mid-read leaves them open.
 */
export function onHandlerLoading(listener: ((loading: boolean) => void) | undefined): void {
  loadingListener = listener;
}

/**
 * Per-thread / per-process module cache: a handler's module is imported once per load of its
 * plugin's code (a registration, a reload) and reused; an execution of an older load keeps the
 * instance it was loaded with (plugin-generations.ts).
 */
const cache = new Map<string, Promise<LoadedHandler>>();
/** The newest handlers loaded so far, by module file then export, for the path that needs no waiting. */
const loaded = new Map<string, Map<string, LoadedHandler>>();

/**
 * Load, validate input, build `ctx`, run. The one place handler code is called, on every backend.
 * Resolves with what the handler returned; rejects with an ExecutionError (HandlerError for
 * anything the handler threw, VALIDATION_ERROR for bad input, HANDLER_NOT_FOUND for a missing export).
 */
export async function runHandler(task: RunnerTask, env: RuntimeEnvironment): Promise<unknown> {
  // Loaded before: no promise to wait for (most executions of a warm runner).
  let handler = loaded.get(task.entryPath)?.get(task.exportName);
  if (handler?.load !== loadOf(task)) {
    loadingListener?.(true);
    try {
      handler = await loadHandler(task.entryPath, task.exportName, task);
    } catch (error) {
      throw toHandlerError(error);
    } finally {
      loadingListener?.(false);
    }
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
    throw handlerThrew(error);
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

function loadHandler(entryPath: string, exportName: string, task: RunnerTask): Promise<LoadedHandler> {
  const load = loadOf(task);
  const key = `${entryPath}#${exportName}#${load}`;
  let loading = cache.get(key);
  if (!loading) {
    loading = importHandler(entryPath, exportName, task, load);
    cache.set(key, loading);
    loading.then(
      (handler) => {
        let exports = loaded.get(entryPath);
        if (!exports) loaded.set(entryPath, (exports = new Map()));
        if ((exports.get(exportName)?.load ?? -1) <= load) exports.set(exportName, handler);
      },
      // A failed load is not cached: the plugin may be fixed on disk.
      () => {
        if (cache.get(key) === loading) cache.delete(key);
      },
    );
  }
  return loading;
}

async function importHandler(entryPath: string, exportName: string, task: RunnerTask, load: number): Promise<LoadedHandler> {
  // Its size and time before the import: a file an editor saves meanwhile is seen changing.
  const found = await statOf(entryPath);
  refuseBackslashPath(entryPath, task);
  refuseLinkOutOfFolder(entryPath, task.pluginRoot, task);
  refuseNonModuleFile(entryPath, found, task);
  const url = handlerModuleUrl(entryPath, task.pluginRoot, load);
  try {
    // Boxed all the way (importNamespace): a module that exports `then` is no promise's value.
    const { namespace } = await importEntry(retryUrl(url, found), entryPath, task);
    return await handlerIn(namespace, { entryPath, exportName, task, load, before: fileState(found) });
  } catch (error) {
    // Node keeps what this URL gave (its failure, or a module without the handler): the entry is
    // imported again under another URL once it has changed (plugin-generations.ts).
    importFailed(url, found, passingShortage(error));
    throw error;
  }
}

async function importEntry(url: string, entryPath: string, task: RunnerTask): Promise<{ namespace: Record<string, unknown> }> {
  try {
    return await importNamespace(url);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException)?.code;
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && !(await exists(entryPath))) {
      throw new HandlerNotFoundError(`Handler "${task.handlerId}" of plugin "${task.pluginId}": module ${entryPath} does not exist`, {
        details: { pluginId: task.pluginId, handlerId: task.handlerId, entry: entryPath },
      });
    }
    throw loadError(error, entryPath, task);
  }
}

/** The handler the entry's module `mod` exports, or why it has none. */
async function handlerIn(mod: Record<string, unknown>, at: { entryPath: string; exportName: string; task: RunnerTask; load: number; before: FileState | undefined }): Promise<LoadedHandler> {
  const { entryPath, exportName, task, load } = at;
  const exported = pickExport(mod, exportName);
  if (typeof exported === 'function') {
    refuseClassExport(exported as HandlerFunction, at);
    return { run: exported as HandlerFunction, schema: undefined, load };
  }
  if (isDefinedHandler(exported)) {
    const def = exported as { run: HandlerFunction; input?: unknown };
    return { run: (input, ctx) => def.run(input, ctx), schema: def.input, load };
  }
  // Not names a module exports itself: a transpiled module's flag, and (Node 23+) a CommonJS module's whole `module.exports`.
  const available = Object.keys(mod).filter((k) => k !== '__esModule' && k !== 'module.exports');
  if (savedHalfWay(at.before, fileState(await statOf(entryPath)))) {
    // A save caught between an editor's truncate and its write (empty when it was read, or written
    // again while it was imported): the module is broken, not missing.
    throw new HandlerError(`Handler "${task.handlerId}" of plugin "${task.pluginId}": ${entryPath} is empty or was being saved as it was loaded (saved half-way?)`, { details: { name: 'Error', file: entryPath } });
  }
  const several = typeof exported === 'object' && exported !== null ? functionsOf(exported) : [];
  const what = several.length > 1 ? `an object of several functions (${several.slice(0, 10).join(', ')}), not one handler` : exported === null ? 'null' : typeof exported;
  throw new HandlerNotFoundError(
    exported === undefined
      ? `Handler "${task.handlerId}" of plugin "${task.pluginId}": ${entryPath} has no export "${exportName}" (exports: ${available.join(', ') || 'none'})${exportHint(mod, available, task.handlerId)}`
      : `Handler "${task.handlerId}" of plugin "${task.pluginId}": export "${exportName}" of ${entryPath} is not a handler (a function or defineHandler({ run }) was expected, got ${what})${exportHint(several.length > 0 ? (exported as Record<string, unknown>) : mod, several.length > 0 ? several : available, task.handlerId)}`,
    { details: { pluginId: task.pluginId, handlerId: task.handlerId, entry: entryPath, export: exportName, exports: available } },
  );
}

/** What a manifest's "export" takes (its schema, host/manifest.ts). */
const EXPORT_NAME = /^[A-Za-z_$][\w$]*$/;

/**
 * The manifest field that would call a handler the file does export (`mod`: its namespace, or the
 * object its export is): the one named as the handler's id, else its only handler
 * (`export async function hello()` under a manifest with no "export"), else the ones to choose from.
 */
function exportHint(mod: Record<string, unknown>, available: readonly string[], handlerId: string): string {
  // A CommonJS module's namespace has its module.exports object as `default` beside its names.
  const named = typeof mod.default === 'object' && mod.default !== null ? available.filter((name) => name !== 'default') : available;
  const found = named.filter((name) => typeof mod[name] === 'function' || isDefinedHandler(mod[name]));
  // Only a name the manifest's "export" takes is hinted: a module may export under any string ("my-handler").
  const handlers = found.filter((name) => EXPORT_NAME.test(name));
  if (handlers.length === 0 && found.length > 0) return `; "export" in kb.plugin.json takes a name such as "run", not ${JSON.stringify(found[0])}: export the handler under one too (export { handler as run })`;
  const meant = handlers.includes(handlerId) ? handlerId : handlers.length === 1 ? handlers[0]! : undefined;
  const field = `on handler ${JSON.stringify(handlerId)} in kb.plugin.json`;
  if (meant !== undefined) return `; set "export": ${JSON.stringify(meant)} ${field}`;
  if (handlers.length === 0) return '';
  return `; set "export" ${field} to the one it runs: ${handlers.slice(0, 10).map((name) => JSON.stringify(name)).join(', ')}${handlers.length > 10 ? ', …' : ''}`;
}

/**
 * Named ESM export, a CJS `module.exports` property, or a CJS `exports.default`: transpiled (marked
 * `__esModule`), or written by hand, when it is a handler (`module.exports` is then the object).
 */
function pickExport(mod: Record<string, unknown>, exportName: string): unknown {
  let value = Object.hasOwn(mod, exportName) ? mod[exportName] : undefined;
  const def = mod.default as Record<string, unknown> | undefined;
  if (value === undefined && def !== null && typeof def === 'object' && Object.hasOwn(def, exportName)) value = def[exportName];
  if (exportName === 'default' && value !== null && typeof value === 'object' && !isDefinedHandler(value)) {
    const inner = value as Record<string, unknown>;
    const handlerInside = typeof inner.default === 'function' || isDefinedHandler(inner.default);
    if ((inner.__esModule || handlerInside) && Object.hasOwn(inner, 'default')) value = inner.default;
  }
  return value;
}

interface FileState {
  size: number;
  mtimeMs: number;
}

function statOf(file: string): Promise<Stats | undefined> {
  return new Promise((resolve) => stat(file, (error, stats) => resolve(error ? undefined : stats)));
}

function fileState(stats: Stats | undefined): FileState | undefined {
  return stats?.isFile() ? { size: stats.size, mtimeMs: stats.mtimeMs } : undefined;
}

/** Empty before or after the import, or changed while it was imported. */
function savedHalfWay(before: FileState | undefined, after: FileState | undefined): boolean {
  if (!before || !after) return false;
  return before.size === 0 || after.size === 0 || before.mtimeMs !== after.mtimeMs || before.size !== after.size;
}

function exists(file: string): Promise<boolean> {
  return new Promise((resolve) => access(file, (error) => resolve(!error)));
}

function createLogger(env: RuntimeEnvironment): HandlerLogger {
  const log = (level: LogEntry['level']) => (message: unknown, fields?: unknown) => {
    let text = typeof message === 'string' ? message : logText(message);
    if (text.length > MAX_LOG_MESSAGE) text = `${text.slice(0, MAX_LOG_MESSAGE)}… [${text.length - MAX_LOG_MESSAGE} more characters]`;
    env.log(level, text, logFields(fields));
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
