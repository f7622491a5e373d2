import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  AbortedError,
  ExecutionError,
  ShuttingDownError,
  TimeoutError,
  ValidationError,
  isExecutionError,
  toHandlerError,
  type ErrorCode,
} from './errors.js';
import type { RunnerTask } from './handler-runtime.js';
import { LatencyRecorder } from './latency-recorder.js';
import { assertGranted, PermissionSpecSchema, type PermissionSpec, type PermissionSubject } from './permissions.js';
import type { Platform } from './platform-gateway.js';
import { PluginRegistry, type PluginSource, type RegisteredPlugin, type ResolvedHandler } from './plugin-registry.js';
import { ExecutionRequestSchema, validateExecuteOptions, type ExecuteOptions, type ExecutionRequest } from './request.js';
import { ExecutionControl, type DispatchControl } from './execution-control.js';
import { Scheduler } from './scheduler.js';
import { settlesWithin } from './settles-within.js';
import type {
  BackendHealth,
  BackendState,
  BackendStats,
  BackendType,
  ExecutionMeta,
  ExecutionResult,
  IExecutionBackend,
  IsolationReport,
  ShutdownOptions,
} from './types.js';
import { parseWith } from './validation.js';
import { listArtifacts, WorkspaceManager, type WorkspaceLease } from './workspace-manager.js';

/** Options every backend accepts. Backend packages extend this with their own. */
export interface BackendOptions {
  /** The host's services, reached by handlers as `ctx.platform` (permission-checked). @default {} */
  platform?: Platform;
  /** Plugin folders (each with a kb.plugin.json) or `{ root, manifest }` objects. Loaded on first use. @default [] */
  plugins?: readonly PluginSource[];
  /** Share one registry between backends instead of `plugins`. @default a new PluginRegistry */
  registry?: PluginRegistry;
  /**
   * Per-execution directory: a WorkspaceManager, `{ root }`, or `false` for none (`ctx.workspace` is then undefined).
   * @default a WorkspaceManager rooted in the OS temp directory
   */
  workspace?: WorkspaceManager | { root: string } | false;
  /** What the host grants when a request's `context.permissions` is absent. @default {} (nothing beyond the plugin folder and workspace) */
  permissions?: PermissionSpec;
  /** Time limit when neither the request nor the manifest sets one. @default 30000 */
  defaultTimeoutMs?: number;
  /** Executions running at once. @default backend-specific (in-process 64, worker-pool = maxThreads, subprocess = CPU count) */
  maxConcurrency?: number;
  /** Executions allowed to wait for a slot; one more gets QUEUE_FULL at once. @default 1000 */
  maxQueue?: number;
  /** Executions of one plugin running at once. @default unlimited (up to maxConcurrency) */
  perPluginConcurrency?: number;
}

const BaseOptionsSchema = z.object({
  platform: z.record(z.string(), z.unknown()).optional(),
  plugins: z.array(z.union([z.string().min(1), z.object({ root: z.string().min(1), manifest: z.unknown() })])).optional(),
  registry: z.instanceof(PluginRegistry).optional(),
  workspace: z.union([z.instanceof(WorkspaceManager), z.object({ root: z.string().min(1) }), z.literal(false)]).optional(),
  permissions: PermissionSpecSchema.optional(),
  defaultTimeoutMs: z.number().int().positive().max(2_147_483_647).optional(),
  maxConcurrency: z.number().int().positive().max(100_000).optional(),
  maxQueue: z.number().int().min(0).max(10_000_000).optional(),
  perPluginConcurrency: z.number().int().positive().optional(),
});

/** Things the base class asks of each backend. */
export interface BackendDefaults {
  concurrency: number;
  maxQueue?: number;
  /**
   * Give the slot back as soon as an execution is timed out or aborted, without waiting for its
   * runner to stop. Only for backends that cannot stop a runner (in-process).
   */
  releaseSlotOnStop?: boolean;
  /**
   * Executions admitted beyond `concurrency` and dispatched ahead of a free runner, which then
   * starts them with no round trip to the host (worker-pool: one behind each running execution).
   * They count as queued (stats, maxQueue). Requires `reportsStart`. @default 0
   */
  lookahead?: number;
  /**
   * The backend calls `control.started()` when its runner really begins an execution; the time
   * limit, `meta.queueWaitMs` and `meta.runMs` count from there instead of from dispatch.
   * @default false
   */
  reportsStart?: boolean;
}


/** How long, after a stop, the result waits for the runner to be gone before it is returned anyway. */
const STOP_SETTLE_MS = 1000;
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_QUEUE = 1000;

type Outcome = { ok: true; data: unknown } | { ok: false; error: ExecutionError };
type RunOutcome = { outcome: Outcome; settled: Promise<unknown>; stopped: boolean; startedAt: number | undefined };

/**
 * Everything a backend does on the host side, written once: request and option validation,
 * handler resolution, the permission preflight, admission (concurrency, per-plugin cap, bounded
 * queue), the workspace lease, timeout and abort, result and meta, stats, shutdown.
 * A backend implements `dispatch` (carry a RunnerTask to its runner) and `closeRunners`.
 */
export abstract class BaseBackend implements IExecutionBackend {
  readonly type: BackendType;
  readonly registry: PluginRegistry;
  protected readonly platform: Platform;
  protected readonly workspace: WorkspaceManager | undefined;
  protected readonly defaultTimeoutMs: number;
  readonly #grant: PermissionSpec;
  readonly #scheduler: Scheduler;
  readonly #releaseSlotOnStop: boolean;
  readonly #reportsStart: boolean;
  /** Executions dispatched and begun by their runner (stats' `active`). */
  #started = 0;
  #state: BackendState = 'starting';
  #ready: Promise<void> | undefined;
  #readyError: ExecutionError | undefined;
  readonly #pendingSources: readonly PluginSource[];
  #shutdown: Promise<void> | undefined;
  readonly #running = new Map<symbol, { stop: (error: ExecutionError) => void; done: Promise<unknown>; control: ExecutionControl }>();
  readonly #cleanups = new Set<Promise<unknown>>();
  readonly #byOutcome: Partial<Record<'ok' | ErrorCode, number>> = {};
  #total = 0;
  #inflight = 0;
  /** Settles when the execution admitted last has been dispatched (or given up): see #execute. */
  #turn: Promise<void> = Promise.resolve();
  #onIdle: (() => void) | undefined;
  readonly #latency = { total: new LatencyRecorder(), wait: new LatencyRecorder(), run: new LatencyRecorder() };

  protected constructor(type: BackendType, options: BackendOptions | undefined, defaults: BackendDefaults) {
    this.type = type;
    const o = parseWith(BaseOptionsSchema, options ?? {}, `Invalid ${type} backend options`) as BackendOptions;
    this.registry = o.registry ?? new PluginRegistry();
    this.platform = (options?.platform ?? {}) as Platform;
    this.workspace =
      o.workspace === false ? undefined : o.workspace instanceof WorkspaceManager ? o.workspace : o.workspace ? new WorkspaceManager(o.workspace) : WorkspaceManager.default();
    this.#grant = o.permissions ?? {};
    this.defaultTimeoutMs = o.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#scheduler = new Scheduler({
      concurrency: o.maxConcurrency ?? defaults.concurrency,
      maxQueue: o.maxQueue ?? defaults.maxQueue ?? DEFAULT_MAX_QUEUE,
      ...(o.perPluginConcurrency ? { perKeyConcurrency: o.perPluginConcurrency } : {}),
      ...(defaults.reportsStart && defaults.lookahead ? { lookahead: defaults.lookahead } : {}),
    });
    this.#releaseSlotOnStop = defaults.releaseSlotOnStop ?? false;
    this.#reportsStart = defaults.reportsStart ?? false;
    this.#pendingSources = o.plugins ?? [];
    if (this.#pendingSources.length === 0) this.#state = 'ready';
  }

  /** Carry the task to a runner and resolve with the handler's data, or reject with an ExecutionError. */
  protected abstract dispatch(task: RunnerTask, control: DispatchControl): Promise<unknown>;
  /** Release every runner (threads, processes, spares). Called once by shutdown, after executions ended. */
  protected abstract closeRunners(): Promise<void>;
  /** Backend-specific figures for `stats().runners`. */
  protected runnerStats(): Record<string, unknown> | undefined {
    return undefined;
  }
  /** Backend-specific reasons it is unhealthy (may wait for a probe of the runtime). */
  protected runnerProblems(): string[] | Promise<string[]> {
    return [];
  }
  /** What isolation handlers really get (may wait for a probe of the runtime). */
  protected abstract isolation(): IsolationReport | Promise<IsolationReport>;

  /** Register another plugin (folder or `{ root, manifest }`) after construction. Rejects with ValidationError. */
  async registerPlugin(source: PluginSource): Promise<RegisteredPlugin> {
    if (this.#state === 'shutting-down' || this.#state === 'closed') throw new ShuttingDownError();
    return typeof source === 'string' ? this.registry.load(source) : this.registry.register(source);
  }

  #ensureReady(): Promise<void> | undefined {
    if (this.#state === 'ready') return undefined;
    this.#ready ??= this.registry.addAll(this.#pendingSources).then(
      () => {
        if (this.#state === 'starting') this.#state = 'ready';
      },
      (error: unknown) => {
        this.#readyError = isExecutionError(error) ? error : new ValidationError(String(error), { cause: error });
        if (this.#state === 'starting') this.#state = 'ready';
      },
    );
    return this.#ready;
  }

  execute<T = unknown>(request: ExecutionRequest, options?: ExecuteOptions): Promise<ExecutionResult<T>> {
    const t0 = performance.now();
    const meta: ExecutionMeta = {
      executionId: '',
      backend: this.type,
      pluginId: '',
      handlerId: '',
      startedAt: Date.now(),
      durationMs: 0,
      queueWaitMs: 0,
      runMs: 0,
      timeoutMs: 0,
      artifacts: [],
    };
    // Counted until #finish, so shutdown() can wait for every execution's cleanup inline in it.
    this.#inflight++;
    // The contract is "never rejects": anything unexpected (a request whose getters throw, a bug)
    // still resolves as a failed result.
    return this.#execute<T>(request, options, meta, t0).catch((error: unknown) => {
      if (!meta.executionId) meta.executionId = randomUUID();
      return this.#finish(meta, t0, { ok: false, error: toHandlerError(error) }) as ExecutionResult<T>;
    });
  }

  async #execute<T>(request: ExecutionRequest, options: ExecuteOptions | undefined, meta: ExecutionMeta, t0: number): Promise<ExecutionResult<T>> {
    let opts: ExecuteOptions;
    let handler: ResolvedHandler;
    let parsed;
    try {
      if (this.#shutdown) throw new ShuttingDownError(`The ${this.type} backend is shut down; it takes no new executions`);
      opts = validateExecuteOptions(options);
      parsed = parseWith(ExecutionRequestSchema, request, 'Invalid execution request');
      meta.pluginId = parsed.pluginId;
      meta.handlerId = parsed.handlerId;
      meta.executionId = parsed.executionId ?? randomUUID();
      const ready = this.#ensureReady();
      if (ready) await ready;
      if (this.#readyError) throw this.#readyError;
      handler = this.registry.resolve(parsed.pluginId, parsed.handlerId);
      const subject: PermissionSubject = { pluginId: handler.pluginId, handlerId: handler.handlerId };
      assertGranted(handler.permissions, parsed.context?.permissions ?? this.#grant, subject);
      meta.timeoutMs = opts.timeoutMs ?? handler.timeoutMs ?? this.defaultTimeoutMs;
      if (opts.signal?.aborted) throw new AbortedError('Execution aborted before it started', { details: { phase: 'queued' } });
    } catch (error) {
      if (!meta.executionId) meta.executionId = randomUUID();
      return this.#finish(meta, t0, { ok: false, error: toHandlerError(error) }) as ExecutionResult<T>;
    }

    // Admission.
    let slot;
    try {
      const pending = this.#scheduler.acquire(handler.pluginId, opts.signal);
      slot = pending instanceof Promise ? await pending : pending;
    } catch (error) {
      return this.#finish(meta, t0, { ok: false, error: toHandlerError(error) }) as ExecutionResult<T>;
    }
    if (this.#shutdown) {
      slot.release();
      return this.#finish(meta, t0, { ok: false, error: new ShuttingDownError('Backend shut down before this execution started') }) as ExecutionResult<T>;
    }

    // Dispatched in the order admitted: workspace directories are made concurrently and may be
    // ready out of order, and an execution admitted first must not lose its place (nor run after
    // one admitted later) for that.
    let turnDone: (() => void) | undefined;
    let turn: Promise<void> | undefined;
    if (this.workspace) {
      turn = this.#turn;
      this.#turn = new Promise<void>((resolve) => (turnDone = resolve));
    }
    let lease: WorkspaceLease | undefined;
    let running: Promise<RunOutcome>;
    try {
      if (this.workspace) {
        try {
          lease = await this.workspace.acquire(meta.executionId);
          await turn;
        } catch (error) {
          slot.release();
          return this.#finish(meta, t0, { ok: false, error: toHandlerError(error) }) as ExecutionResult<T>;
        }
        if (this.#shutdown) {
          slot.release();
          await lease.release().catch(noop);
          return this.#finish(meta, t0, { ok: false, error: new ShuttingDownError('Backend shut down before this execution started') }) as ExecutionResult<T>;
        }
      }
      // An abort that landed after admission, while the workspace was being made, fired its event
      // before #run listens for it: without this check the execution would run to its timeout.
      if (opts.signal?.aborted) {
        slot.release();
        if (lease) await lease.release().catch(noop);
        return this.#finish(meta, t0, {
          ok: false,
          error: new AbortedError('Execution aborted before it started', { details: { phase: 'queued' } }),
        }) as ExecutionResult<T>;
      }

      const task: RunnerTask = {
        executionId: meta.executionId,
        pluginId: handler.pluginId,
        handlerId: handler.handlerId,
        pluginRoot: handler.pluginRoot,
        entryPath: handler.entryPath,
        exportName: handler.exportName,
        input: parsed.input,
        context: parsed.context ?? {},
        workspaceDir: lease?.dir,
        permissions: handler.permissions,
        timeoutMs: meta.timeoutMs,
        memoryMb: handler.memoryMb,
        ...(opts.channel ? { channel: { connectionId: opts.channel.connectionId, path: opts.channel.path } } : {}),
      };
      running = this.#run(task, handler, opts, meta);
    } finally {
      // Never before the one admitted earlier has had its turn.
      if (turnDone) void turn!.then(turnDone);
    }
    const { outcome, settled, stopped, startedAt } = await running;
    // Waiting lasts until the runner began it (dispatch, unless the backend reports the start).
    const tEnd = performance.now();
    meta.queueWaitMs = round((startedAt ?? tEnd) - t0);
    meta.runMs = startedAt === undefined ? 0 : round(tEnd - startedAt);

    // The slot and the workspace go back once the runner is really gone. A stopped execution's
    // result waits at most STOP_SETTLE_MS for that; in-process runners cannot be stopped, so
    // their slot goes back at once (the handler may go on in the background: see docs).
    let runnerGone = true;
    if (stopped) {
      if (this.#releaseSlotOnStop) slot.release();
      else runnerGone = await settlesWithin(settled, STOP_SETTLE_MS);
    }
    if (lease) {
      meta.artifacts = await listArtifacts(lease.dir);
      if (opts.keepWorkspace) meta.workspaceDir = lease.dir;
    }
    if (!stopped) {
      // The outcome came from the runner itself: it is done, nothing to wait for.
      slot.release();
      if (lease && !opts.keepWorkspace) await lease.release().catch(noop);
      return this.#finish(meta, t0, outcome) as ExecutionResult<T>;
    }
    const cleanup = async () => {
      if (!this.#releaseSlotOnStop) {
        await settled;
        slot.release();
      }
      if (lease && !opts.keepWorkspace) await lease.release().catch(noop);
    };
    if (runnerGone) await cleanup();
    else this.#track(cleanup());
    return this.#finish(meta, t0, outcome) as ExecutionResult<T>;
  }

  #run(
    task: RunnerTask,
    handler: ResolvedHandler,
    opts: ExecuteOptions,
    meta: ExecutionMeta,
  ): Promise<RunOutcome> {
    const control = new ExecutionControl(task, handler, opts, meta, this.platform);
    const key = Symbol(task.executionId);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let startedAt: number | undefined;
      let dispatched: Promise<unknown>;
      let settled: Promise<unknown>;
      const signal = opts.signal;
      const done = (outcome: Outcome, stopped: boolean) => {
        if (control.over) return;
        control.over = true;
        if (timer) clearTimeout(timer);
        if (startedAt !== undefined) this.#started--;
        signal?.removeEventListener('abort', onAbort);
        this.#running.delete(key);
        resolve({ outcome, settled, stopped, startedAt });
      };
      const stop = (error: ExecutionError) => {
        if (control.over) return;
        control.stop(error);
        done({ ok: false, error }, true);
      };
      const onAbort = () =>
        stop(
          control.hasStarted
            ? new AbortedError(`Execution of "${task.handlerId}" (plugin "${task.pluginId}") aborted by the caller`, { details: { phase: 'running' } })
            : new AbortedError(`Execution of "${task.handlerId}" (plugin "${task.pluginId}") aborted while queued; it never ran`, { details: { phase: 'queued' } }),
        );
      const armTimer = () => {
        timer = setTimeout(
          () =>
            stop(
              new TimeoutError(`Handler "${task.handlerId}" of plugin "${task.pluginId}" did not finish within ${task.timeoutMs} ms`, {
                details: { timeoutMs: task.timeoutMs, pluginId: task.pluginId, handlerId: task.handlerId },
              }),
            ),
          task.timeoutMs,
        );
      };
      const markStarted = () => {
        startedAt = performance.now();
        this.#started++;
      };
      if (this.#reportsStart) {
        control.onStarted = () => {
          if (control.over) return;
          markStarted();
          armTimer();
        };
      } else {
        // Begun as it is dispatched (in-process runs its synchronous part inside dispatch()).
        control.hasStarted = true;
        markStarted();
      }
      try {
        dispatched = this.dispatch(task, control);
      } catch (error) {
        dispatched = Promise.reject(error);
      }
      settled = dispatched.then(noop, noop);
      this.#running.set(key, { stop, done: settled, control });
      dispatched.then(
        (data) => done({ ok: true, data }, false),
        (error: unknown) => done({ ok: false, error: toHandlerError(error) }, false),
      );
      if (control.over) return;
      if (!this.#reportsStart) armTimer();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  #finish(meta: ExecutionMeta, t0: number, outcome: Outcome): ExecutionResult {
    if (--this.#inflight === 0 && this.#onIdle) this.#onIdle();
    meta.durationMs = round(performance.now() - t0);
    const code = outcome.ok ? 'ok' : (outcome.error.code as ErrorCode);
    this.#byOutcome[code] = (this.#byOutcome[code] ?? 0) + 1;
    this.#total++;
    this.#latency.total.record(meta.durationMs);
    this.#latency.wait.record(meta.queueWaitMs);
    this.#latency.run.record(meta.runMs);
    return outcome.ok ? { ok: true, data: outcome.data, meta } : { ok: false, error: outcome.error, meta };
  }

  #track(promise: Promise<unknown>): void {
    this.#cleanups.add(promise);
    void promise.finally(() => this.#cleanups.delete(promise));
  }

  /** Running and waiting executions; those dispatched ahead of a runner that has not begun them are waiting. */
  #counts(): { active: number; queued: number } {
    const s = this.#scheduler;
    if (!this.#reportsStart) return { active: s.active, queued: s.queued };
    return { active: this.#started, queued: s.queued + Math.max(0, s.active - this.#started) };
  }

  async stats(): Promise<BackendStats> {
    const s = this.#scheduler;
    const { active, queued } = this.#counts();
    const runners = this.runnerStats();
    const byOutcome: BackendStats['byOutcome'] = { ok: 0, ...this.#byOutcome };
    return {
      backend: this.type,
      state: this.#state,
      active,
      queued,
      concurrency: s.concurrency,
      maxQueue: s.maxQueue,
      utilization: s.concurrency > 0 ? active / s.concurrency : 0,
      total: this.#total,
      byOutcome,
      latency: { total: this.#latency.total.summary(), wait: this.#latency.wait.summary(), run: this.#latency.run.summary() },
      ...(runners ? { runners } : {}),
    };
  }

  async health(): Promise<BackendHealth> {
    const ready = this.#ensureReady();
    if (ready) await ready;
    const [runnerProblems, isolation] = await Promise.all([this.runnerProblems(), this.isolation()]);
    const problems = [...(this.#readyError ? [this.#readyError.message] : []), ...runnerProblems];
    if (this.#state === 'shutting-down' || this.#state === 'closed') problems.push(`backend is ${this.#state}`);
    return {
      ok: problems.length === 0,
      backend: this.type,
      state: this.#state,
      problems,
      ...this.#counts(),
      isolation,
    };
  }

  shutdown(options: ShutdownOptions = {}): Promise<void> {
    this.#shutdown ??= this.#doShutdown(options.timeoutMs ?? 10_000);
    return this.#shutdown;
  }

  async #doShutdown(timeoutMs: number): Promise<void> {
    this.#state = 'shutting-down';
    this.#scheduler.rejectQueued(
      new ShuttingDownError(`The ${this.type} backend shut down before this execution started`, { details: { phase: 'queued' } }),
    );
    if (this.#running.size > 0) {
      await settlesWithin(Promise.all([...this.#running.values()].map((r) => r.done)), timeoutMs);
    }
    for (const { stop, control } of [...this.#running.values()]) {
      stop(
        control.hasStarted
          ? new ShuttingDownError(`The ${this.type} backend shut down while this execution was running`, { details: { phase: 'running' } })
          : new ShuttingDownError(`The ${this.type} backend shut down before this execution started`, { details: { phase: 'queued' } }),
      );
    }
    // Stopped executions release their workspace inside execute() once their runner is gone
    // (bounded by STOP_SETTLE_MS); wait for that so nothing is left when shutdown() resolves.
    if (this.#inflight > 0) {
      await settlesWithin(new Promise<void>((resolve) => (this.#onIdle = resolve)), STOP_SETTLE_MS + 1000);
      this.#onIdle = undefined;
    }
    await Promise.allSettled([...this.#cleanups]);
    try {
      await this.closeRunners();
    } finally {
      await Promise.allSettled([...this.#cleanups]);
      this.#state = 'closed';
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}


function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function noop(): void {}
