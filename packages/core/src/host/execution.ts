import { ShuttingDownError, TimeoutError, toInternalError, type KnownExecutionError } from '../errors.js';
import { onAbort } from './abort-listeners.js';
import { callersAbort, throwIfAborted, untilAborted, untilStopped } from './caller-abort.js';
import type { CalledAt } from './called-at.js';
import { Deadlines } from './deadlines.js';
import { claimExecutionId } from './execution-ids.js';
import { ExecutionControl } from './execution-control.js';
import { ExecutionTelemetry } from './execution-telemetry.js';
import type { ExecutionHost } from './execution-host.js';
import type { RunnerTask } from '../runner/handler-runtime.js';
import { assertGranted } from './permissions.js';
import type { PluginManifest } from './manifest.js';
import type { ResolvedHandler } from './plugin-registry.js';
import { parseExecutionRequest, validateExecuteOptions, type ExecuteOptions, type ExecutionRequest, type ParsedExecutionRequest } from './request.js';
import { cloneForWire } from '../wire-clone.js';
import type { Slot } from './scheduler.js';
import { Holdings } from './holdings.js';
import { roundMs } from './latency-recorder.js';
import { inCallersContext } from './callers-context.js';
import { nameFromRequest } from './name-from-request.js';
import { removeTree } from './remove-tree.js';
import { settlesWithin } from '../settles-within.js';
import type { ExecutionMeta, ExecutionResult } from '../types.js';
import { listArtifacts, type WorkspaceManager } from './workspace-manager.js';
import { monotonicNow, setImmediate } from '../real-timers.js';

/** node:crypto's randomUUID, looked up on first use: importing core does not load node:crypto (start-up, issue 15). */
let randomUUID: (() => string) | undefined;
const newExecutionId = (): string => (randomUUID ??= process.getBuiltinModule('node:crypto').randomUUID)();

/** How long a stopped execution's result waits for its runner to be gone, and then for its release, before returning anyway. */
const STOP_SETTLE_MS = 1000;
/** Every execution's time limit, on one timer per distinct limit. */
const deadlines = new Deadlines();

export type Outcome = { ok: true; data: unknown } | { ok: false; error: KnownExecutionError };

/**
 * One `execute()` call, from validation to its result: admission (slot), workspace lease, time
 * limit, the caller's abort, dispatch, stop, and the release of everything it took. The single
 * owner of an execution's resources: each is held in `#held` the moment it is taken and released
 * by `#release`, whatever path the execution ends on.
 */
export class Execution {
  readonly meta: ExecutionMeta;
  readonly #host: ExecutionHost;
  readonly #t0: number;
  readonly #held = new Holdings();
  #control: ExecutionControl | undefined;
  /** What dispatch returned: a stopped execution's release waits for it to settle. */
  #dispatched: Promise<unknown> | undefined;
  #keepWorkspace = false;
  /** `monotonicNow()` when the result was decided: once dispatched, or when it was refused before. */
  #decidedAt: number | undefined;
  #leaseDir: string | undefined;
  /** The plugin's manifest as registered at the call (a reload or unregister since changes nothing of this execution). */
  #manifest: PluginManifest | undefined;
  /** Removes the workspace (unless kept), once: held with the rest, or called on its own (#releaseLater). */
  #releaseLease: (() => Promise<void>) | undefined;
  /** Frees the executionId the caller gave it (claimExecutionId), once. */
  #freeId: (() => void) | undefined;
  /** Ends the wait for its workspace (shutdown), while it waits. */
  #stopWaiting: ((reason: KnownExecutionError) => void) | undefined;
  /** Undefined unless an OpenTelemetry SDK is registered: then its span and metrics (execution-telemetry.ts). */
  readonly #telemetry: ExecutionTelemetry | undefined;

  /** `calledAt`: when the caller called, if before now (a lazy backend's first use, which loaded the backend first). */
  constructor(host: ExecutionHost, calledAt?: CalledAt) {
    this.#host = host;
    this.#t0 = calledAt?.t0 ?? monotonicNow();
    this.meta = { executionId: '', backend: host.type, pluginId: '', handlerId: '', startedAt: calledAt?.startedAt ?? Date.now(), durationMs: 0, queueWaitMs: 0, runMs: 0, timeoutMs: 0, artifacts: [] };
    // Decided once, here, in the caller's context: the caller's active span is the parent.
    this.#telemetry = ExecutionTelemetry.begin(host.type, host.remoteRunners, this.#t0);
  }

  /** Run it; never rejects (a failure anywhere, a bug included, is a failed result). */
  async run(request: ExecutionRequest, options: ExecuteOptions | undefined): Promise<ExecutionResult> {
    let outcome: Outcome;
    try {
      // A request that is no object is the first mistake to name: execute('plugin', 'handler')
      // gives its ids as two strings, not options of the wrong kind.
      if (typeof request !== 'object' || request === null) parseExecutionRequest(request);
      const opts = validateExecuteOptions(options, this.#host);
      this.#telemetry?.continues(opts.traceparent);
      // Each step is synchronous where it can be (plugins loaded, a free slot, no workspace):
      // awaited only when it is not, since most executions take that path.
      const prepared = this.#prepare(request, opts);
      const task = prepared instanceof Promise ? await prepared : prepared;
      outcome = await this.#admitAndDispatch(task, opts);
    } catch (error) {
      outcome = { ok: false, error: this.#internal(error) };
      nameFromRequest(this.meta, request);
      // Refused or stopped before its hand-over: all of its time was queue wait, as a dispatched
      // one's is up to the hand-over (the backend's load, the plugins', a slot, a workspace).
      if (!this.#control) this.meta.queueWaitMs = roundMs((this.#decidedAt = monotonicNow()) - this.#t0);
    }
    const released = this.#release();
    // Whatever went wrong in giving back, the result stands and nothing stays held.
    if (released) await released.catch(() => this.#held.releaseAll());
    // Released on the spot (the common case): the end is when the result was decided.
    this.meta.durationMs = roundMs((released ? monotonicNow() : (this.#decidedAt ?? monotonicNow())) - this.#t0);
    if (!this.meta.executionId) this.meta.executionId = newExecutionId();
    const result: ExecutionResult = outcome.ok ? { ok: true, data: outcome.data, meta: this.meta } : { ok: false, error: outcome.error, meta: this.meta };
    this.#host.finished(result, this.#control !== undefined);
    this.#telemetry?.finish(result);
    return result;
  }

  /** A failure of this backend's own code (ours pass through as they are): never the handler's fault. */
  #internal(error: unknown): KnownExecutionError {
    return toInternalError(error, `the ${this.#host.type} backend`);
  }

  /** Stop it now with `reason` (shutdown), also while its workspace is being made; a no-op once its result is decided. */
  stop(reason: KnownExecutionError): void {
    if (this.#control) this.#control.stop(reason);
    else this.#stopWaiting?.(reason);
  }

  /** Whether a runner has taken it (the backend said who runs it): stopped before that, it never started. */
  get taken(): boolean {
    return this.meta.runnerId !== undefined;
  }

  /** Validate the request, resolve the handler, check its permissions: the task, without a workspace yet. */
  #prepare(request: ExecutionRequest, opts: ExecuteOptions): RunnerTask | Promise<RunnerTask> {
    const host = this.#host;
    if (host.stopping()) throw new ShuttingDownError(`The ${host.type} backend is shutting down or shut down; it takes no new executions`, { details: { phase: 'queued' } });
    const parsed = parseExecutionRequest(request);
    // Copied now, at the call, as postMessage would: the caller may change its input (or context)
    // object while this waits for its plugins, a slot or a workspace.
    parsed.input = cloneForWire(parsed.input, 'input');
    if (parsed.context) parsed.context = cloneForWire(parsed.context, 'context');
    const meta = this.meta;
    meta.pluginId = parsed.pluginId;
    meta.handlerId = parsed.handlerId;
    meta.executionId = parsed.executionId ?? newExecutionId();
    if (parsed.executionId !== undefined) this.#held.hold((this.#freeId = claimExecutionId(this.#host.idsInUse, parsed.executionId)));
    // Before it takes a place among those waiting for the plugins to load (QUEUE_FULL past them).
    throwIfAborted(opts.signal);
    const ready = host.ready(parsed.pluginId, opts.signal);
    if (!ready) return this.#task(parsed, opts);
    // Waiting for them holds a place in the queue (stats().queued, maxQueue): in the metric too, without a plugin id not yet known to be registered.
    const queued = this.#telemetry?.queued(undefined);
    return ready.finally(queued).then(() => {
      // Loaded once shutdown's wait was over: it never started, and takes no slot nor workspace.
      if (host.closing()) throw new ShuttingDownError(`The ${host.type} backend shut down before this execution started`, { details: { phase: 'queued' } });
      return this.#task(parsed, opts);
    });
  }

  #task(parsed: ParsedExecutionRequest, opts: ExecuteOptions): RunnerTask {
    const host = this.#host;
    const meta = this.meta;
    const telemetry = this.#telemetry;
    const traceparent = telemetry ? telemetry.start(parsed.pluginId, parsed.handlerId, meta.executionId, opts.traceparent) : opts.traceparent;
    const handler: ResolvedHandler = host.registry.resolve(parsed.pluginId, parsed.handlerId, host.remoteRunners);
    this.#manifest = handler.plugin.manifest;
    telemetry?.pluginVersion(handler.plugin.manifest.version);
    // Known once the handler is: a PERMISSION_DENIED says the limit it would have had.
    meta.timeoutMs = opts.timeoutMs ?? handler.timeoutMs ?? host.defaultTimeoutMs;
    assertGranted(handler.permissions, parsed.context?.permissions ?? host.grant, { pluginId: handler.pluginId, handlerId: handler.handlerId });
    return {
      executionId: meta.executionId,
      pluginId: handler.pluginId,
      handlerId: handler.handlerId,
      pluginRoot: handler.pluginRoot,
      entryPath: handler.entryPath,
      exportName: handler.exportName,
      input: parsed.input,
      context: parsed.context ?? {},
      workspaceDir: undefined,
      permissions: handler.permissions,
      timeoutMs: meta.timeoutMs,
      memoryMb: handler.memoryMb,
      generation: handler.generation,
      moduleKey: handler.moduleKey,
      traceparent,
      ...(opts.channel ? { channel: { connectionId: opts.channel.connectionId, path: opts.channel.path } } : {}),
    };
  }

  /** A slot, then a workspace lease (in admission order), each held as soon as taken, then the hand-over; a slot waited for comes inside the release that frees it (docs/benchmarks.md). */
  #admitAndDispatch(task: RunnerTask, opts: ExecuteOptions): Promise<Outcome> {
    throwIfAborted(opts.signal);
    const slot = this.#host.scheduler.take(task.pluginId, opts.signal);
    if (slot) return this.#admitted(slot, task, opts);
    const queued = this.#telemetry?.queued(task.pluginId);
    return new Promise<Outcome>((resolve, reject) => {
      const granted = (given: Slot): void => {
        queued?.();
        try {
          resolve(this.#admitted(given, task, opts));
        } catch (error) {
          reject(error);
        }
      };
      // Told inside another execution's release: run in this caller's async context (its AsyncLocalStorage stores, seen by an in-process handler and the host's services).
      this.#host.scheduler.enqueue(task.pluginId, opts.signal, inCallersContext(granted), (error) => (queued?.(), reject(error)));
    });
  }

  /** Its slot taken (and held): a workspace lease where the backend makes them, then the hand-over. */
  #admitted(slot: Slot, task: RunnerTask, opts: ExecuteOptions): Promise<Outcome> {
    this.#held.hold(() => slot.release());
    // Checked in the same turn as the hand-over, which listens from there: an abort in a turn between them was heard by neither.
    if (this.#host.workspace) return this.#leaseWorkspace(this.#host.workspace, task, opts).then(() => (this.#checkAdmitted(opts), this.#dispatch(task, opts)));
    this.#checkAdmitted(opts);
    return this.#dispatch(task, opts);
  }

  /** A workspace, made in admission order (dispatches follow it). */
  async #leaseWorkspace(workspace: WorkspaceManager, task: RunnerTask, opts: ExecuteOptions): Promise<void> {
    const { turn, done } = this.#host.takeTurn();
    // Shutdown stops it too, as one that runs: a workspace that is never made holds no caller for good.
    const waiting = this.#host.running.add(this);
    try {
      // An abort ends the wait (a lease made after it is released first): the time limit counts from the hand-over, after this.
      const lease = await untilStopped(workspace.acquire(task.executionId), opts.signal, (stop) => (this.#stopWaiting = stop), (late) => late.release(), (givingBack) => this.#host.track(givingBack));
      this.#held.hold(() => this.#releaseLease?.());
      this.#releaseLease = async () => {
        this.#releaseLease = undefined;
        await (this.#keepWorkspace ? lease.keep() : lease.release());
      };
      this.#leaseDir = task.workspaceDir = lease.dir;
      // Behind one whose workspace is still being made: an abort or shutdown ends this wait too (its lease released first, #release).
      await untilAborted(turn, opts.signal, (stop) => (this.#stopWaiting = stop));
    } finally {
      this.#stopWaiting = undefined;
      this.#host.running.remove(waiting);
      // Never before the one admitted earlier has had its turn.
      void turn.then(done);
    }
  }

  /** Shutdown's wait may have ended, or an abort come, while it waited for its slot or its workspace. */
  #checkAdmitted(opts: ExecuteOptions): void {
    if (this.#host.closing()) throw new ShuttingDownError(`The ${this.#host.type} backend shut down before this execution started`, { details: { phase: 'queued' } });
    // An abort while the workspace was made fired before anyone listened for it.
    throwIfAborted(opts.signal);
    this.#keepWorkspace = opts.keepWorkspace === true;
  }

  /** Hand the task over; the time limit and the caller's signal count from here. */
  #dispatch(task: RunnerTask, opts: ExecuteOptions): Promise<Outcome> {
    const host = this.#host;
    const telemetry = this.#telemetry;
    const control = (this.#control = new ExecutionControl(task, opts, this.meta, host.platform, this.#manifest!, telemetry));
    control.timesRunner = host.remoteRunners;
    const startedAt = monotonicNow();
    this.meta.queueWaitMs = roundMs(startedAt - this.#t0);
    const limitMs = task.timeoutMs;
    control.endsAt = startedAt + limitMs;
    return new Promise<Outcome>((resolve) => {
      const decide = (outcome: Outcome, now = monotonicNow()) => {
        deadlines.cancel(limitMs, deadline);
        stopListening?.();
        host.running.remove(running);
        const decidedAt = (this.#decidedAt = now);
        // Remote runners: the wait for a worker to take its task (in the stream) is queue wait, not run.
        let ranFrom = startedAt;
        if (host.remoteRunners) {
          ranFrom = control.runnerTookAt ?? decidedAt;
          this.meta.queueWaitMs = roundMs(ranFrom - this.#t0);
        }
        this.meta.runMs = roundMs(decidedAt - ranFrom);
        telemetry?.decided(outcome.ok ? undefined : outcome.error);
        resolve(outcome);
      };
      // Listened to first: a signal-like object of the host's whose addEventListener throws fails the
      // execution with that (INTERNAL_ERROR) before it is in the running list, with no deadline left behind.
      const stopListening = opts.signal ? onAbort(opts.signal, () => control.stop(callersAbort(task, opts.signal!, this.taken))) : undefined;
      const running = host.running.add(this);
      control.onStop((error) => decide({ ok: false, error }));
      // Expired after the loop's next read of its input: an answer that came meanwhile, while the
      // host's own loop was held up past the limit (a long synchronous task, a pause), is read first.
      const expire = () => void (control.hasAnswer || control.stop(this.#timeoutError(task)));
      const deadline = deadlines.add(limitMs, startedAt, () => void setImmediate(expire));
      telemetry?.dispatched(task.pluginId, task.handlerId);
      if (opts.beginBy) task.beginBy = control.beginBy();
      let dispatched: Promise<unknown>;
      try {
        // In the execution span's context: an in-process handler's own spans nest under it.
        dispatched = telemetry ? telemetry.within(() => host.dispatch(task, control)) : host.dispatch(task, control);
      } catch (error) {
        dispatched = Promise.reject(error);
      }
      this.#dispatched = dispatched;
      const settle = (outcome: Outcome) => {
        if (control.over) return;
        // After its time limit, from a runner on the host's own loop (in-process: a handler that
        // held it past the limit): a timeout, as where the runner is stopped at the limit. One from
        // a thread or a process read before the expiry is taken: it is what the runner answered
        // while the host, held up, could not stop it.
        const now = monotonicNow();
        if (host.releaseSlotOnStop && now > control.endsAt) return control.stop(this.#timeoutError(task));
        control.end();
        decide(outcome, now);
        // Answered: the slot goes back now, and one waiting for it is on its way (#admitAndDispatch).
        if (this.#leaseDir === undefined) this.#held.releaseAll();
      };
      dispatched.then(
        (data) => settle({ ok: true, data }),
        (error: unknown) => settle({ ok: false, error: this.#internal(error) }),
      );
    });
  }

  /** Its time limit ran out; one that no runner took says so, and why where the backend knows. */
  #timeoutError(task: RunnerTask): TimeoutError {
    const message = `Handler "${task.handlerId}" of plugin "${task.pluginId}" did not finish within ${task.timeoutMs} ms`;
    const details = { timeoutMs: task.timeoutMs, pluginId: task.pluginId, handlerId: task.handlerId };
    const waitingFor = this.#control?.pendingCalls() ?? [];
    // A host service that never answered (one waiting for an execution that waits for this one's slot) is said.
    if (waitingFor.length > 0) return new TimeoutError(`${message}: the host had not answered its ${waitingFor.join(', ')}`, { details: { ...details, waitingFor } });
    if (this.meta.runnerId !== undefined) return new TimeoutError(message, { details });
    const why = (this.#control && this.#host.unstartedReason(task, this.#control.manifest)) ?? 'no runner took it in that time';
    return new TimeoutError(`${message}: it never started (${why})`, { details: { ...details, phase: 'queued' } });
  }

  /**
   * Give back what it took. After a stop, the slot and the workspace wait for the runner to be
   * gone (a handler may still write there): up to STOP_SETTLE_MS inline, then in the background,
   * tracked so that shutdown waits for it. A backend that cannot stop its runner gives the slot
   * back at once (the handler may go on in the background: see docs/backends/in-process.md).
   */
  #release(): Promise<void> | undefined {
    const stopped = this.#control?.stopReason !== undefined;
    if ((stopped && !this.#host.releaseSlotOnStop) || this.#leaseDir !== undefined) return this.#releaseLater(stopped);
    return this.#held.releaseAll();
  }

  async #releaseLater(stopped: boolean): Promise<void> {
    const settled = (this.#dispatched ?? Promise.resolve()).then(noop, noop);
    const runnerGone = stopped && !this.#host.releaseSlotOnStop ? await settlesWithin(settled, STOP_SETTLE_MS) : true;
    if (this.#leaseDir !== undefined) {
      const listing = await listArtifacts(this.#leaseDir);
      this.meta.artifacts = listing.files;
      if (listing.truncated) this.meta.artifactsTruncated = true;
      if (this.#keepWorkspace) this.meta.workspaceDir = this.#leaseDir;
    }
    if (stopped && this.#host.releaseSlotOnStop) return this.#releaseAfterHandler(settled);
    // A result waits for the workspace's removal only so long (a plugin's tree can take seconds,
    // minutes, to remove): the rest goes on in the background, the slot held until it is done,
    // and shutdown waits for it (bounded).
    const release = async () => this.#held.releaseAll();
    // Its runner gone, its caller may give its id to another (a retry) while the removal goes on.
    if (runnerGone) this.#freeId?.();
    const releasing = runnerGone ? release() : settled.then(release);
    this.#host.track(releasing);
    if (runnerGone) await settlesWithin(releasing, STOP_SETTLE_MS);
  }

  /**
   * A stopped handler a backend cannot end (in-process) may go on: its slot goes back now, and
   * neither its result nor shutdown waits long for its workspace's removal (STOP_SETTLE_MS at
   * most; a handler that writes on there races it). What it wrote meanwhile goes once it settles.
   */
  async #releaseAfterHandler(settled: Promise<void>): Promise<void> {
    const releaseLease = this.#releaseLease;
    this.#releaseLease = undefined;
    let removed: Promise<boolean> | undefined;
    if (releaseLease) {
      const dir = this.#leaseDir!;
      const removing = releaseLease().catch(noop);
      this.#host.track((removed = settlesWithin(removing, STOP_SETTLE_MS)));
      if (!this.#keepWorkspace) void Promise.all([removing, settled]).then(() => removeTree(dir)).catch(noop);
    }
    const released = this.#held.releaseAll();
    // The result waits (bounded) for the removal, as a stop's does on the backends that end their runner.
    await removed;
    await released;
  }
}

function noop(): void {}
