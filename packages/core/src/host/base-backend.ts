import { DEFAULT_TIMEOUT_MS, backendOptionsSchema, parseOptions, type BackendOptions } from './backend-options.js';
import { ShuttingDownError, ValidationError, isExecutionError, type KnownExecutionError } from '../errors.js';
import { Execution } from './execution.js';
import type { ExecutionHost } from './execution-host.js';
import { EXECUTE_CALLED_AT, type CalledAt } from './called-at.js';
import type { DispatchControl } from './execution-control.js';
import type { RunnerTask } from '../runner/handler-runtime.js';
import type { PluginManifest } from './manifest.js';
import type { PermissionSpec } from './permissions.js';
import { unprovidedPlatformMethods, type Platform } from './platform-gateway.js';
import { PluginRegistry, type PluginSource, type RegisteredPlugin } from './plugin-registry.js';
import { passingShortage } from '../passing-shortage.js';
import { PluginChanges } from './plugin-changes.js';
import { PluginWatcher } from './plugin-watcher.js';
import type { ExecuteOptions, ExecutionRequest } from './request.js';
import { Scheduler } from './scheduler.js';
import { LiveList, LiveMap } from './live-list.js';
import { settlesWithin } from '../settles-within.js';
import { missingPluginFiles } from './plugin-files.js';
import { ShutdownDeadline } from './shutdown-deadline.js';
import { ShutdownHooks, shutdownTimeout, type ShutdownListener } from './shutdown-hooks.js';
import type { BackendHealth, BackendState, BackendStats, BackendType, ExecutionResult, IExecutionBackend, IsolationReport, ShutdownOptions } from '../types.js';
import { WorkspaceManager } from './workspace-manager.js';
import { absolutePluginSource } from './caller-paths.js';
import { backendClosed, backendOpened } from './backend-census.js';
import { slowReleases } from './slow-releases.js';
import { bindBackendMethods } from './bound-methods.js';
import { ExecutionTally } from './execution-tally.js';
import { PluginWaits } from './plugin-waits.js';
import type { BackendDefaults } from './backend-defaults.js';
import { monotonicNow } from '../real-timers.js';
export type { BackendDefaults } from './backend-defaults.js';

const DEFAULT_MAX_QUEUE = 1000;
/** How long shutdown waits, past its own timeout, for stopped executions to release what they held before it closes the runners. */
const RELEASE_WAIT_MS = 2000;

/**
 * Everything a backend does on the host side, written once. Each `execute()` is an Execution
 * (execution.ts: the lifecycle and its single owner of slot, workspace, timer and stop); this
 * class holds what they share — options, registry, scheduler, counters — and shutdown.
 * A backend implements `dispatch`, `closeRunners` and `isolation`: docs/backend-authors.md.
 */
export abstract class BaseBackend implements IExecutionBackend {
  readonly type: BackendType;
  readonly registry: PluginRegistry;
  protected readonly platform: Platform;
  protected readonly workspace: WorkspaceManager | undefined;
  protected readonly defaultTimeoutMs: number;
  readonly #host: ExecutionHost;
  readonly #scheduler: Scheduler;
  #state: BackendState = 'starting';
  #ready: Promise<void> | undefined;
  #readyError: KnownExecutionError | undefined;
  readonly #pendingSources: readonly PluginSource[];
  /** Indices in #pendingSources of the folders the last read could not read for a passing shortage: read again. */
  #unreadFor: readonly number[] = [];
  #shutdown: Promise<void> | undefined;
  #shutdownDeadline: ShutdownDeadline | undefined;
  readonly #shutdownHooks = new ShutdownHooks();
  /** Set once shutdown() has run its hooks: no new execution is taken from then on. */
  #stopping = false;
  /** Set once shutdown() has waited for the executions called before it: the rest are stopped. */
  #closing = false;
  /** Releases that outlive their results (ExecutionHost.track), with when each began (`monotonicNow()`). */
  readonly #releases = new Map<Promise<unknown>, number>();
  readonly #tally = new ExecutionTally();
  /** The executions waiting for the plugins to load (first use): stopped once shutdown() has waited for the executions called before it, before it resolves. */
  readonly #pluginWaits = new PluginWaits();
  /** Settles when the execution admitted last has had its workspace made (see ExecutionHost.takeTurn). */
  #turn: Promise<void> = Promise.resolve();
  /** The `watch` option's folder watchers, when it is on. */
  readonly #watcher: PluginWatcher | undefined;
  readonly #stopHearingRegistry: () => void;
  readonly #pluginChanges: PluginChanges;

  protected constructor(type: BackendType, options: BackendOptions | undefined, defaults: BackendDefaults) {
    this.type = type;
    const o: BackendOptions = parseOptions(defaults.optionsSchema ?? backendOptionsSchema(), options, `${type} backend options`, true, defaults.optionElsewhere);
    this.registry = o.registry ?? new PluginRegistry();
    this.platform = (options?.platform ?? {}) as Platform;
    this.workspace =
      o.workspace === false ? undefined : o.workspace instanceof WorkspaceManager ? o.workspace : o.workspace ? new WorkspaceManager(o.workspace) : WorkspaceManager.default();
    this.defaultTimeoutMs = o.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#scheduler = new Scheduler({
      concurrency: o.maxConcurrency ?? defaults.concurrency,
      maxQueue: o.maxQueue ?? defaults.maxQueue ?? DEFAULT_MAX_QUEUE,
      ...(o.perPluginConcurrency ? { perKeyConcurrency: o.perPluginConcurrency } : {}),
    });
    this.#pendingSources = (o.plugins ?? []).map(absolutePluginSource);
    this.#watcher = o.watch ? new PluginWatcher(o.watch === true ? {} : o.watch, (pluginId) => this.reloadPlugin(pluginId)) : undefined;
    this.#pluginChanges = new PluginChanges({
      type,
      registry: this.registry,
      watcher: this.#watcher,
      ensureReady: () => this.#ensureReady(),
      shutDown: () => (this.#shutDownBegun() ? this.#state : undefined),
    });
    // Nothing to load and nothing to watch: ready now.
    if (this.#pendingSources.length === 0 && !this.#watcher) this.#state = 'ready';
    this.#host = this.#executionHost(o.permissions ?? {}, defaults);
    // From the registry, not from reloadPlugin: a registry shared with another backend may be changed there.
    const stopHearingReloads = this.registry.onReload((plugin) => this.pluginReloaded(plugin));
    const stopHearingRemovals = this.registry.onUnregister((plugin) => {
      this.#watcher?.unwatch(plugin.id);
      this.pluginUnregistered(plugin);
    });
    this.#stopHearingRegistry = () => void (stopHearingReloads(), stopHearingRemovals());
    bindBackendMethods(this);
    backendOpened(type);
  }

  /** Carry the task to a runner; resolve with the handler's data or reject with an error of the family. Must settle after `control.onStop` fired (the slot and workspace wait for it). */
  protected abstract dispatch(task: RunnerTask, control: DispatchControl): Promise<unknown>;
  /** Release every runner (threads, processes, spares). Called once by shutdown, after executions ended. */
  protected abstract closeRunners(): Promise<void>;
  /** What isolation handlers really get (may wait for a probe of the runtime). */
  protected abstract isolation(): IsolationReport | Promise<IsolationReport>;
  /** A subclass constructor that throws after super() calls this first: what this one opened (census, watcher, reload listener) goes. */
  protected constructionFailed(): void {
    this.#watcher?.close();
    this.#stopHearingRegistry();
    backendClosed(this.type);
  }
  /** Backend-specific figures for `stats().runners`. */
  protected runnerStats(): Record<string, unknown> | undefined {
    return undefined;
  }
  /** Backend-specific reasons it is unhealthy (may wait for a probe of the runtime). */
  protected runnerProblems(): string[] | Promise<string[]> {
    return [];
  }
  /** Whether this host runs the plugins' code from their folders, so that health() checks the files are there (a queue host does not: its workers do). */
  protected get runsPluginFilesHere(): boolean {
    return true;
  }
  /**
   * Why `task`, handed to `dispatch`, has no runner yet (no worker connected, all busy, none with
   * its plugin's version …): the TIMEOUT of one that never started says it. `manifest`: its
   * plugin's as it was called (a reload since changes nothing of it). Undefined: no more than "no runner took it".
   */
  protected unstartedReason(_task: RunnerTask, _manifest: PluginManifest): string | undefined {
    return undefined;
  }
  /**
   * A plugin was reloaded (`plugin.generation` is new): runners that keep an older generation's
   * modules loaded should be retired once their execution ends (tasks carry `generation`; a
   * runner that imports a handler afresh for each execution has nothing to do).
   */
  protected pluginReloaded(_plugin: RegisteredPlugin): void {}

  /** A plugin was unregistered (in any backend sharing the registry): runners holding its code let it go once its executions end. */
  protected pluginUnregistered(_plugin: RegisteredPlugin): void {}

  /**
   * Shutdown has begun: executions waiting in core's queue for a slot get SHUTTING_DOWN now. A
   * backend whose executions also wait for a runner outside it (the queue backend's stream)
   * fails those now as well, with `notStarted` (SHUTTING_DOWN, `phase: 'queued'`).
   */
  protected shutdownBegun(_notStarted: ShuttingDownError): void {}

  /**
   * Register another plugin (a folder's path or file: URL, or `{ root, manifest }`) after
   * construction; the same plugin again with another manifest replaces it (PluginRegistry.register).
   * The `plugins` option is loaded first, so a later registration is never undone by it. Rejects
   * with ValidationError.
   */
  registerPlugin(source: PluginSource): Promise<RegisteredPlugin> {
    return this.#pluginChanges.register(source);
  }

  #shutDownBegun(): boolean {
    return this.#state === 'shutting-down' || this.#state === 'closed';
  }

  /**
   * Load a plugin's code anew: its manifest is read again from its folder (a plugin registered
   * as `{ root, manifest }` keeps its manifest) and validated, and from then on new executions
   * load the handlers' modules afresh; executions already running finish on the code they
   * have. Rejects with ValidationError for a bad manifest (the previous version stays
   * registered and serving), HandlerNotFoundError for an unknown plugin, ShuttingDownError once
   * shutdown began. What a fresh module means on each backend: docs/plugins.md.
   */
  reloadPlugin(pluginId: string): Promise<RegisteredPlugin> {
    return this.#pluginChanges.reload(pluginId);
  }

  /**
   * Remove a plugin: executions called from now on get HANDLER_NOT_FOUND, while those under way
   * (running, or waiting for a slot) finish as they would have. Its folder is no longer watched, and
   * runners that hold its code let it go (worker-pool: its threads are retired once idle). The id
   * may then be registered again, from any folder. Resolves whether it was registered; rejects
   * with ValidationError for an id that is not a non-empty string, ShuttingDownError once
   * shutdown began.
   */
  unregisterPlugin(pluginId: string): Promise<boolean> {
    return this.#pluginChanges.unregister(pluginId);
  }

  execute<T = unknown>(request: ExecutionRequest, options?: ExecuteOptions): Promise<ExecutionResult<T>> {
    this.#tally.begun();
    return new Execution(this.#host).run(request, options) as Promise<ExecutionResult<T>>;
  }

  /** execute() for a call made at `calledAt` (EXECUTE_CALLED_AT: a lazy backend's first executions). */
  [EXECUTE_CALLED_AT]<T = unknown>(request: ExecutionRequest, options: ExecuteOptions | undefined, calledAt: CalledAt): Promise<ExecutionResult<T>> {
    this.#tally.begun();
    return new Execution(this.#host, calledAt).run(request, options) as Promise<ExecutionResult<T>>;
  }

  async stats(): Promise<BackendStats> {
    const s = this.#scheduler;
    const runners = this.runnerStats();
    return {
      backend: this.type,
      state: this.#state,
      active: s.active,
      queued: s.queued + this.#pluginWaits.size,
      concurrency: s.concurrency,
      maxQueue: s.maxQueue,
      utilization: s.concurrency > 0 ? s.active / s.concurrency : 0,
      ...this.#tally.figures(),
      ...(runners ? { runners } : {}),
    };
  }

  async health(): Promise<BackendHealth> {
    await this.#ensureReady()?.catch(() => undefined);
    const [runnerProblems, isolation, missingFiles] = await Promise.all([this.runnerProblems(), this.isolation(), this.runsPluginFilesHere ? missingPluginFiles(this.registry.list()) : []]);
    const unloaded = this.registry.failures.map((f) => `${f.source} failed to load: ${f.error.message}`);
    const unprovided = this.#host.remoteRunners ? [] : unprovidedPlatformMethods(this.registry.list(), this.platform, this.#host.grant);
    const leftBehind = this.workspace?.leftBehind();
    const rootProblem = await this.workspace?.rootProblem();
    const problems = [
      ...(this.#readyError ? [this.#readyError.message] : []),
      ...unloaded,
      ...missingFiles,
      ...unprovided, // a queue host's services may be on its workers (remoteRunners)
      ...(this.#watcher?.problems() ?? []),
      ...runnerProblems,
      ...(leftBehind ? [leftBehind] : []),
      ...(rootProblem ? [rootProblem] : []),
      ...slowReleases(this.#releases),
    ];
    if (this.#state === 'shutting-down' || this.#state === 'closed') problems.push(`backend is ${this.#state}`);
    return { ok: problems.length === 0, backend: this.type, state: this.#state, problems, active: this.#scheduler.active, queued: this.#scheduler.queued + this.#pluginWaits.size, isolation };
  }

  shutdown(options?: ShutdownOptions): Promise<void> {
    // Checked on every call: a mistake is said whether or not a shutdown already runs.
    const timeoutMs = shutdownTimeout(options);
    if (typeof timeoutMs !== 'number') return timeoutMs;
    if (this.#shutdown) {
      // A second call may cut the wait shorter (a second Ctrl-C), never longer; one from a listener is not waited for.
      this.#shutdownDeadline?.tighten(timeoutMs);
      this.#shutdownHooks.standDownCaller();
      return this.#shutdown;
    }
    const deadline = (this.#shutdownDeadline = new ShutdownDeadline(timeoutMs));
    this.#state = 'shutting-down';
    this.#watcher?.close();
    this.#stopHearingRegistry();
    backendClosed(this.type);
    // What onShutdown() registered closes first, while the backend still serves (a channel
    // mount runs its connections' disconnect handlers on it). With nothing registered, it stops
    // taking work at once: an execute() called right after shutdown() gets SHUTTING_DOWN.
    const hooks = this.#shutdownHooks.run(timeoutMs, deadline);
    this.#shutdown = hooks ? hooks.then(() => this.#stop(deadline)) : this.#stop(deadline);
    return this.#shutdown;
  }

  onShutdown(listener: ShutdownListener): () => void {
    return this.#shutdownHooks.add(listener);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  /**
   * Refuse new work and fail what waits in the queue; let the executions called before this
   * finish (bounded) — running, or holding a slot on their way to a runner (their workspace being
   * made, say) — stop the rest, wait for their release (bounded), close the runners.
   */
  async #stop(deadline: ShutdownDeadline): Promise<void> {
    this.#stopping = true;
    this.#scheduler.closeQueue(new ShuttingDownError(`The ${this.type} backend shut down before this execution started`, { details: { phase: 'queued' } }));
    this.shutdownBegun(this.#neverStarted());
    if (this.#tally.inflight > 0) await deadline.within(this.#tally.idle());
    this.#closing = true;
    this.#pluginWaits.stopAll(new ShuttingDownError(`The ${this.type} backend shut down before this execution started`, { details: { phase: 'queued' } }));
    const running = this.#host.running;
    for (const execution of running.values()) {
      // One no runner had taken yet (a queue task still in the stream) never ran.
      const stopped = execution.taken ? new ShuttingDownError(`The ${this.type} backend shut down while this execution was running`, { details: { phase: 'running' } }) : this.#neverStarted();
      execution.stop(stopped);
    }
    // Their runners have RELEASE_WAIT_MS to end them and report back (a thread's exit, a queue
    // worker's last word); what still waits then is let go by closing the runners, not awaited first.
    await settlesWithin(
      this.#tally.idle().then(() => Promise.allSettled([...this.#releases.keys()])),
      RELEASE_WAIT_MS,
    );
    try {
      await this.closeRunners();
    } finally {
      // Workspaces still being removed get as long again: a plugin's deep tree may take minutes,
      // which no shutdown waits for (what is left, sweep() removes).
      await settlesWithin(Promise.allSettled([...this.#releases.keys()]), RELEASE_WAIT_MS);
      this.#state = 'closed';
    }
  }

  #neverStarted(): ShuttingDownError {
    return new ShuttingDownError(`The ${this.type} backend shut down before any runner took this execution; it never started`, { details: { phase: 'queued' } });
  }

  #throwIfNotReady(): void {
    if (this.#readyError) throw this.#readyError;
  }

  #ensureReady(): Promise<void> | undefined {
    if (this.#state === 'ready' && this.#unreadFor.length === 0) return undefined;
    // A plugin that fails to load fails only its own executions (the registry keeps its error).
    // One whose folder could not be read for a passing shortage (the process out of descriptors
    // at its first execution) is read again by the next execution, or health(): taken for good,
    // that plugin would fail every execution for the rest of the process.
    const again = this.#unreadFor;
    this.#ready ??= this.registry.addEach(again.length ? again.map((i) => this.#pendingSources[i]!) : this.#pendingSources, again.length ? again : undefined).then(
      async (failures) => {
        this.#unreadFor = failures.filter((f) => passingShortage(f.error)).map((f) => Number(/\d+/.exec(f.source)![0]));
        // Watching from here on: a change before this was read with the plugins.
        await this.#watcher?.watchAll(this.registry.list());
        if (this.#state === 'starting') this.#state = 'ready';
        if (this.#unreadFor.length > 0) this.#ready = undefined;
      },
      (error: unknown) => {
        this.#readyError = isExecutionError(error) ? error : new ValidationError(String(error), { cause: error });
        if (this.#state === 'starting') this.#state = 'ready';
      },
    );
    return this.#ready;
  }

  /** What the executions of this backend share, as the lifecycle sees it. */
  #executionHost(grant: PermissionSpec, defaults: BackendDefaults): ExecutionHost {
    return {
      type: this.type,
      registry: this.registry,
      platform: this.platform,
      workspace: this.workspace,
      scheduler: this.#scheduler,
      grant,
      defaultTimeoutMs: this.defaultTimeoutMs,
      releaseSlotOnStop: defaults.releaseSlotOnStop ?? false,
      remoteRunners: defaults.remoteRunners ?? false,
      remoteWorkspaces: defaults.remoteWorkspaces ?? false,
      running: new LiveList(),
      idsInUse: new LiveMap(),
      stopping: () => this.#stopping,
      closing: () => this.#closing,
      ready: (pluginId, signal) => {
        const ready = this.#ensureReady();
        if (ready) {
          // One that could neither run nor wait once they load is QUEUE_FULL now, not then (with those running meanwhile: a folder read again).
          const waits = this.#pluginWaits;
          this.#scheduler.refuseBeyond(waits.size, 'waiting for the plugins to load', pluginId, waits.of(pluginId));
          // The caller's abort ends its wait, and its place among those waiting, at once.
          return waits.wait(ready, signal, pluginId, () => this.#throwIfNotReady());
        }
        this.#throwIfNotReady();
        return undefined;
      },
      takeTurn: () => {
        const turn = this.#turn;
        let done!: () => void;
        this.#turn = new Promise<void>((resolve) => (done = resolve));
        return { turn, done };
      },
      dispatch: (task, control) => this.dispatch(task, control),
      unstartedReason: (task, manifest) => this.unstartedReason(task, manifest),
      finished: (result, dispatched) => this.#tally.finished(result, dispatched),
      track: (release) => {
        this.#releases.set(release, monotonicNow());
        void release.finally(() => this.#releases.delete(release));
      },
    };
  }
}

