import { ShuttingDownError, ValidationError, isExecutionError, toInternalError, type ExecutionErrorOptions, type KnownExecutionError } from '../errors.js';
import { cloneForWire } from '../wire-clone.js';
import { thrownText } from '../wire-value.js';
import { withAbsolutePaths } from './caller-paths.js';
import { EXECUTE_CALLED_AT, type CalledAt } from './called-at.js';
import type { BackendHealth, BackendStats, IExecutionBackend, ShutdownOptions } from '../types.js';
import type { BackendOptions } from './backend-options.js';
import type { BackendLoader, BuiltInBackendType } from './backend-packages.js';
import type { PluginSource, RegisteredPlugin } from './plugin-registry.js';
import { checkPluginIdArgument } from './plugin-id-argument.js';
import type { ExecuteOptions, ExecutionRequest } from './request.js';
import { EXECUTE_OPTIONS, REQUEST_FIELDS } from './request-fields.js';
import type { ExecutionResult } from '../types.js';
import { ShutdownDeadline } from './shutdown-deadline.js';
import { ShutdownHooks, shutdownTimeout, type ShutdownListener } from './shutdown-hooks.js';
import { bindBackendMethods } from './bound-methods.js';
import { ExecutionTelemetry } from './execution-telemetry.js';
import { ExecutionTally } from './execution-tally.js';
import { roundMs } from './latency-recorder.js';
import { takeBackendOptions } from './lazy-backend-options.js';
import { monotonicNow } from '../real-timers.js';

/**
 * Options of `createExecutionBackend`: `type` plus the common BackendOptions and whatever the
 * chosen backend accepts, checked by that backend when it loads (VALIDATION_ERROR on every
 * execution and in health(), naming the nearest option). The umbrella package types them per
 * backend, so that a misspelt option does not compile there.
 */
export type ExecutionBackendOptions = BackendOptions & { /** Where handlers run. @default 'in-process' */ type?: BuiltInBackendType; [option: string]: unknown };

/** What `createExecutionBackend` returns: the backend interface plus plugin registration. */
export interface LazyExecutionBackend extends IExecutionBackend {
  /** Add a plugin after creation; rejects with ValidationError for a bad manifest. */
  registerPlugin(source: PluginSource): Promise<RegisteredPlugin>;
  /** Load a plugin's code anew: new executions run the new code, running ones finish on the old (docs/plugins.md). */
  reloadPlugin(pluginId: string): Promise<RegisteredPlugin>;
  /** Remove a plugin: new executions get HANDLER_NOT_FOUND, running ones finish; its id may be registered again. Resolves whether it was registered (docs/plugins.md). */
  unregisterPlugin(pluginId: string): Promise<boolean>;
  /** Load the backend package now instead of on first use (e.g. at host start-up). */
  ready(): Promise<void>;
}

/**
 * A backend of `options.type` whose package `load` imports on first use (execute, stats,
 * health, registerPlugin or ready). Throws ValidationError synchronously only for an unknown
 * `type` or a non-object options argument — a misuse of the API.
 */
export function lazyExecutionBackend(options: ExecutionBackendOptions = {}, load: BackendLoader): LazyExecutionBackend {
  const { type, given } = takeBackendOptions(options);
  return new LazyBackend(type, withAbsolutePaths(given), load);
}

/** A new error of the same class, message, details (copied) and cause; `error` itself if it cannot be made. */
function ownCopy(error: KnownExecutionError): KnownExecutionError {
  try {
    const Class = error.constructor as new (message: string, options: ExecutionErrorOptions) => KnownExecutionError;
    const copy = new Class(error.message, { details: structuredClone(error.details), cause: error.cause });
    return copy.code === error.code ? copy : error;
  } catch {
    return error;
  }
}

/** A failed load's error as ready() and the plugin methods reject with it: a copy each time, so that a host that annotates one changes no other (nor the copies execute() gives). */
function ownLoadError(error: unknown): unknown {
  return isExecutionError(error) ? ownCopy(error) : error;
}

interface Loadable extends IExecutionBackend {
  registerPlugin?(source: PluginSource): Promise<RegisteredPlugin>;
  reloadPlugin?(pluginId: string): Promise<RegisteredPlugin>;
  unregisterPlugin?(pluginId: string): Promise<boolean>;
}

class LazyBackend implements LazyExecutionBackend {
  readonly type: BuiltInBackendType;
  readonly #options: Record<string, unknown>;
  readonly #loadClass: BackendLoader;
  #loading: Promise<Loadable> | undefined;
  #backend: Loadable | undefined;
  #shutdown: Promise<void> | undefined;
  #shutdownDeadline: ShutdownDeadline | undefined;
  /** The loaded backend, once its own shutdown was called. */
  #closing: Loadable | undefined;
  /** Set as it stops taking executions, if a load was begun: the loaded backend (its shutdown called), or undefined if the load failed. */
  #closingKnown: Promise<Loadable | undefined> | undefined;
  #stopped: Promise<void> | undefined;
  readonly #shutdownHooks = new ShutdownHooks();
  /** The executions answered here, never seen by a loaded backend: counted by stats() while none is loaded. */
  readonly #refused = new ExecutionTally();
  /** Set once shutdown() has run its hooks: no new execution is taken from then on. */
  #stopping = false;

  /** `options`: as given (optionsAsGiven), paths made absolute. */
  constructor(type: BuiltInBackendType, options: Record<string, unknown>, load: BackendLoader) {
    this.type = type;
    this.#loadClass = load;
    this.#options = options;
    bindBackendMethods(this);
  }

  #load(): Promise<Loadable> {
    this.#loading ??= this.#loadClass(this.type).then((Backend) => {
      this.#backend = new Backend(this.#options);
      return this.#backend;
    });
    return this.#loading;
  }

  /**
   * shutdown() called before it was ever loaded: stats() and health() load nothing now (after it, a
   * backend loaded would never be shut down; while its onShutdown() listeners run, it would be loaded,
   * a queue backend connected, only to be shut down). Its state then, or undefined.
   */
  #unloadedShutdown(): 'shutting-down' | 'closed' | undefined {
    if (!this.#shutdownDeadline || this.#loading) return undefined;
    return this.#stopping ? 'closed' : 'shutting-down';
  }

  async ready(): Promise<void> {
    // Shut down, used or not: not ready (a host that checks it to see whether to send work).
    if (this.#stopping) throw new ShuttingDownError(`The ${this.type} backend is shut down${this.#loading ? '' : '; it loads nothing more'}`);
    try {
      await this.#load();
    } catch (error) {
      throw ownLoadError(error);
    }
  }

  execute<T = unknown>(request: ExecutionRequest, options?: ExecuteOptions): Promise<ExecutionResult<T>> {
    // Hot path: once loaded, straight through.
    if (this.#backend && !this.#stopping) return this.#backend.execute<T>(request, options);
    return this.#executeSlow<T>(request, options);
  }

  async #executeSlow<T>(callersRequest: ExecutionRequest, callersOptions?: ExecuteOptions): Promise<ExecutionResult<T>> {
    // Loaded and told to shut down: it refuses it, counted in its stats and telemetry.
    if (this.#closing) return this.#closing.execute<T>(callersRequest, callersOptions);
    // What the caller passed, as it was at the call: it may reuse or change those objects while
    // the package loads (a loop that sets `request.input` and calls again). Objects that cannot
    // be read (a getter that throws) go as they are: the backend fails them (INTERNAL_ERROR).
    let request: ExecutionRequest = callersRequest;
    let options = callersOptions;
    let taken = false;
    try {
      request = takeRequest(callersRequest);
      options = callersOptions !== null && typeof callersOptions === 'object' ? (fieldsOf(callersOptions, EXECUTE_OPTIONS) as ExecuteOptions) : callersOptions;
      taken = true;
    } catch {
      request = callersRequest;
      options = callersOptions;
    }
    const startedAt = Date.now();
    const t0 = monotonicNow();
    // Begun at the call (the caller's active context is the span's parent), used only if it fails here.
    const telemetry = ExecutionTelemetry.begin(this.type, this.type === 'queue', t0);
    if (taken) telemetry?.continues(options?.traceparent);
    if (this.#stopping) {
      // Loaded (or loading): refused by that backend once it is told to shut down, and counted
      // in its stats as any refusal after it, not only answered here.
      const closing = await this.#closingKnown;
      if (closing) return closing.execute<T>(request, options);
      return this.#failure(taken ? request : undefined, new ShuttingDownError(`The ${this.type} backend is shutting down or shut down; it takes no new executions`, { details: { phase: 'queued' } }), startedAt, t0, telemetry);
    }
    let backend: Loadable;
    try {
      backend = await this.#load();
    } catch (error) {
      // Its own error object for each result: a host that adds to one does not change the next.
      return this.#failure(taken ? request : undefined, ownCopy(toInternalError(error, `loading the ${this.type} backend`)), startedAt, t0, telemetry);
    }
    // Timed from the call, the package's load included, where the backend can be told when that was.
    const since = (backend as { [EXECUTE_CALLED_AT]?: (r: ExecutionRequest, o: ExecuteOptions | undefined, at: CalledAt) => Promise<ExecutionResult<T>> })[EXECUTE_CALLED_AT];
    return typeof since === 'function' ? since.call(backend, request, options, { startedAt, t0 }) : backend.execute<T>(request, options);
  }

  /** A result for an execution the backend never saw: recorded (a span, the metrics) as the backend records its own refusals. */
  #failure<T>(request: ExecutionRequest | undefined, error: KnownExecutionError, startedAt: number, t0: number, telemetry: ExecutionTelemetry | undefined): ExecutionResult<T> {
    const r = (request ?? {}) as Partial<ExecutionRequest>;
    // All of it was spent waiting for the backend (its load, or its shutdown): queue wait, as a loaded backend counts a refusal's.
    const waitedMs = roundMs(monotonicNow() - t0);
    const result: ExecutionResult<T> = {
      ok: false,
      error,
      meta: {
        executionId: typeof r.executionId === 'string' ? r.executionId : crypto.randomUUID(),
        backend: this.type,
        pluginId: typeof r.pluginId === 'string' ? r.pluginId : '',
        handlerId: typeof r.handlerId === 'string' ? r.handlerId : '',
        startedAt,
        durationMs: waitedMs,
        queueWaitMs: waitedMs,
        runMs: 0,
        timeoutMs: 0,
        artifacts: [],
      },
    };
    telemetry?.finish(result);
    this.#refused.begun();
    this.#refused.finished(result, false);
    return result;
  }

  async registerPlugin(source: PluginSource): Promise<RegisteredPlugin> {
    if (this.#stopping) throw new ShuttingDownError(`Cannot register a plugin: shutdown() was called on the ${this.type} backend`);
    // Loaded: handed over in this turn, so that an execute() right after it hears of it.
    let backend = this.#backend;
    try {
      backend ??= await this.#load();
    } catch (error) {
      throw ownLoadError(error);
    }
    if (typeof backend.registerPlugin !== 'function') throw new ValidationError(`The ${this.type} backend cannot register plugins after creation`);
    return backend.registerPlugin(source);
  }

  reloadPlugin(pluginId: string): Promise<RegisteredPlugin> {
    return this.#changing(pluginId, 'reload', (backend) => backend.reloadPlugin!(pluginId));
  }

  unregisterPlugin(pluginId: string): Promise<boolean> {
    return this.#changing(pluginId, 'unregister', (backend) => backend.unregisterPlugin!(pluginId));
  }

  /** `change` on the loaded backend (the id checked first, refused once shut down): in this turn when loaded, as registerPlugin, so calls reach it in the order made. */
  #changing<T>(pluginId: string, action: 'reload' | 'unregister', change: (backend: Loadable) => Promise<T>): Promise<T> {
    const onto = (backend: Loadable): Promise<T> =>
      typeof backend[`${action}Plugin`] === 'function' ? change(backend) : Promise.reject(new ValidationError(`The ${this.type} backend cannot ${action} plugins`));
    try {
      checkPluginIdArgument(pluginId, action);
      if (this.#stopping) throw new ShuttingDownError(`Cannot ${action} plugin "${pluginId}": shutdown() was called on the ${this.type} backend`);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#backend ? onto(this.#backend) : this.#load().then(onto, (error: unknown) => Promise.reject(ownLoadError(error)));
  }

  async stats(): Promise<BackendStats> {
    const unloaded = this.#unloadedShutdown();
    if (unloaded) return closedStats(this.type, this.#options, this.#refused, unloaded);
    let backend: Loadable;
    try {
      backend = await this.#load();
    } catch {
      // It never runs anything (every execute() fails with why; health() and ready() say it): a
      // monitor that polls stats() gets figures, not a rejection to handle.
      return closedStats(this.type, {}, this.#refused);
    }
    const stats = await backend.stats();
    return { ...stats, state: this.#stateSeen(stats.state) };
  }

  /** Once shutdown() was called the backend is shutting down, though the loaded one hears of it a moment later (after the onShutdown listeners). */
  #stateSeen<S extends BackendStats['state']>(state: S): S | 'shutting-down' {
    return this.#shutdown && (state === 'ready' || state === 'starting') ? 'shutting-down' : state;
  }

  async health(): Promise<BackendHealth> {
    const unloaded = this.#unloadedShutdown();
    if (unloaded) {
      const isolation = { requested: 'unknown', active: 'unknown' as const, layers: [], reason: 'the backend was shut down before it was loaded' };
      return { ok: false, backend: this.type, state: unloaded, problems: [`backend is ${unloaded}`], active: 0, queued: 0, isolation };
    }
    let backend: Loadable;
    try {
      backend = await this.#load();
    } catch (error) {
      // A load that failed is not retried: the backend will never run anything, so it is not "starting".
      const isolation = { requested: 'unknown', active: 'unknown' as const, layers: [], reason: 'the backend could not be loaded' };
      return { ok: false, backend: this.type, state: 'closed', problems: [thrownText(error)], active: 0, queued: 0, isolation };
    }
    const health = await backend.health();
    const state = this.#stateSeen(health.state);
    if (state === health.state) return health;
    return { ...health, ok: false, state, problems: [...health.problems, `backend is ${state}`] };
  }

  shutdown(options?: ShutdownOptions): Promise<void> {
    const timeoutMs = shutdownTimeout(options);
    if (typeof timeoutMs !== 'number') return timeoutMs;
    if (this.#shutdown) {
      // As BaseBackend: a second call may cut the wait shorter, never longer; one from a listener is not waited for.
      this.#shutdownDeadline?.tighten(timeoutMs);
      this.#shutdownHooks.standDownCaller();
      void this.#closing?.shutdown({ timeoutMs: this.#shutdownDeadline!.remainingMs() });
      return this.#shutdown;
    }
    const deadline = (this.#shutdownDeadline = new ShutdownDeadline(timeoutMs));
    // As BaseBackend: what onShutdown() registered runs while executions are still taken; with
    // nothing registered, none is taken from now on.
    const hooks = this.#shutdownHooks.run(timeoutMs, deadline);
    if (!hooks) this.#stop(deadline);
    this.#shutdown = (async () => {
      await hooks;
      this.#stop(deadline);
      await this.#closingKnown;
      await this.#stopped;
    })();
    return this.#shutdown;
  }

  /** Take no execution from now on, and shut the loaded backend down once it is (never loaded: nothing is loaded just to stop it). */
  #stop(deadline: ShutdownDeadline): void {
    this.#stopping = true;
    if (!this.#loading || this.#closingKnown) return;
    this.#closingKnown = this.#loading.then(
      (backend) => {
        // In the same turn: nothing is handed to it between the two.
        this.#closing = backend;
        this.#stopped = backend.shutdown({ timeoutMs: deadline.remainingMs() });
        return backend;
      },
      () => undefined,
    );
  }

  onShutdown(listener: ShutdownListener): () => void {
    return this.#shutdownHooks.add(listener);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}

/** The stats of a backend shut down before it was loaded, or that could not load: nothing ran; the executions it answered itself counted; its limits as its options gave them, else 0. */
function closedStats(type: BuiltInBackendType, options: Record<string, unknown>, refused: ExecutionTally, state: 'shutting-down' | 'closed' = 'closed'): BackendStats {
  const given = (value: unknown) => (typeof value === 'number' ? value : 0);
  return {
    backend: type,
    state,
    active: 0,
    queued: 0,
    concurrency: given(options.maxConcurrency),
    maxQueue: given(options.maxQueue),
    utilization: 0,
    ...refused.figures(),
  };
}

/**
 * `value`'s fields as execute() would read them: its own enumerable ones (an unknown one is
 * refused by name), and each of `known` however it has it (inherited, a class's getter, not
 * enumerable), each read once.
 */
function fieldsOf(value: object, known: Iterable<string>): Record<string, unknown> {
  // No prototype: a JSON-made "__proto__" key stays a field (refused by name), as the loaded backend sees it.
  const copy = Object.create(null) as Record<string, unknown>;
  for (const key of Object.keys(value)) copy[key] = (value as Record<string, unknown>)[key];
  for (const key of known) {
    if (Object.hasOwn(copy, key)) continue;
    const field = (value as Record<string, unknown>)[key];
    if (field !== undefined) copy[key] = field;
  }
  return copy;
}

/** A copy of a request as it is now: its fields, and its input and context cloned (left as they are if they cannot be: execute() reports that). */
function takeRequest(request: ExecutionRequest): ExecutionRequest {
  if (request === null || typeof request !== 'object' || Array.isArray(request)) return request;
  const taken = fieldsOf(request, REQUEST_FIELDS) as unknown as ExecutionRequest;
  for (const field of ['input', 'context'] as const) {
    if (!Object.hasOwn(taken, field)) continue;
    try {
      (taken as Record<typeof field, unknown>)[field] = cloneForWire(taken[field], field);
    } catch {
      // Not cloneable: execute() fails it with the same error, naming where.
    }
  }
  return taken;
}
