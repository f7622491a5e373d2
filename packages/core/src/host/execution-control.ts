import { ValidationError, WorkerCrashedError, type KnownExecutionError } from '../errors.js';
import { beginByOf, beginRefusal } from './begin-by.js';
import { callersScope, type CallersScope } from './callers-context.js';
import { callbackFailed, settleQuietly } from './host-callbacks.js';
import { CALLS_IN_FLIGHT } from '../runner/call-window.js';
import { callAfterEnd } from '../runner/call-errors.js';
import type { RunnerTask } from '../runner/handler-runtime.js';
import type { PluginManifest } from './manifest.js';
import type { PermissionSpec, PermissionSubject } from './permissions.js';
import { holdCall, releaseCall } from './held-calls.js';
import { invokePlatform, type Platform } from './platform-gateway.js';
import type { ExecuteOptions, LogEntry } from './request.js';
import type { HostServices } from './host-session.js';
import type { ExecutionMeta } from '../types.js';
import type { ExecutionTelemetry } from './execution-telemetry.js';
import { monotonicNow } from '../real-timers.js';

/** Who runs an execution, as `meta` reports it. */
export interface RunnerInfo {
  /** Identifies the runner across its executions: a thread id, a pid, a remote worker's name. */
  id: string;
  /** The process id, where the runner is a process of this machine (or the host itself). */
  pid?: number;
  /** The worker thread id, where the runner is a thread of the host. */
  threadId?: number;
  /** The machine it runs on, where that is not the host's (a remote worker's host name). */
  host?: string;
}

/** What a runner with a workspace of its own (a remote worker) reports about it. */
export interface RunnerWorkspace {
  /** Files the handler left there, relative to it. */
  artifacts: string[];
  /** The directory on the runner's machine, when it was kept. */
  dir?: string;
  /** The list is not whole (ExecutionMeta.artifactsTruncated). */
  truncated?: boolean;
}

export type StopListener = (reason: KnownExecutionError) => void;

/**
 * The host side of one execution, handed to `dispatch`: how the backend hears of a stop, says
 * who runs the execution, and relays what the runner sends (logs, events, platform and channel
 * calls). See docs/backend-authors.md.
 */
export interface DispatchControl extends HostServices {
  /**
   * The one way a stop (timeout, the caller's abort, shutdown) reaches the backend: `listener`
   * is called once, synchronously, with the error the result reports; the backend must then stop
   * its runner and let `dispatch` settle. Registered after the stop, it is called on the next
   * microtask. Returns a function that removes it. `stopSignal()` adapts this to an AbortSignal.
   */
  onStop(listener: StopListener): () => void;
  /** Why the execution was stopped, once it was (undefined until then). */
  readonly stopReason: KnownExecutionError | undefined;
  /**
   * How long, after the caller's abort, the handler may go on to honour `ctx.signal`: the
   * backend's `cancelGraceMs`, but never past the execution's own time limit.
   */
  abortGraceMs(cancelGraceMs: number): number;
  /** Say who runs it (goes into `meta.runnerId`, `meta.pid`, `meta.workerId`, `meta.runnerHost`). */
  setRunner(runner: RunnerInfo): void;
  /**
   * For a runner whose workspace is its own, not a host lease (a remote worker; its backend runs
   * with the host's `workspace: false`): its artifacts and kept directory go into `meta`.
   */
  reportWorkspace(workspace: RunnerWorkspace): void;
  /** Whether the caller asked to keep the workspace: for a runner whose workspace is its own. */
  readonly keepWorkspace: boolean;
  /**
   * After a log line or event: a promise while whoever takes this execution's output is behind
   * (ExecuteOptions.outputPace). A runner that can wait (a thread, a child) is read no further
   * until it settles; undefined: read on.
   */
  outputPace(): Promise<void> | undefined;
  /** The plugin's manifest as registered when the execution was called: a reload or unregister since changes nothing of it. */
  readonly manifest: PluginManifest;
  /**
   * The runner's answer is in hand, and `dispatch` settles once the backend has read what the
   * runner sent before it (its output, bounded): a time limit that runs out meanwhile no longer
   * stops it (a caller's abort or shutdown still does).
   */
  answered(): void;
}

/** An AbortSignal that fires with the stop reason, for runners whose APIs want one (e.g. `ctx.signal` in the host). */
export function stopSignal(control: DispatchControl): AbortSignal {
  const reason = control.stopReason;
  if (reason) return AbortSignal.abort(reason);
  const controller = new AbortController();
  control.onStop((stopped) => controller.abort(stopped));
  return controller.signal;
}

/**
 * One execution's DispatchControl. Its state is its own: the lifecycle ends it (`end()`, once the
 * result is decided) or stops it (`stop()`), and after either, late logs and events are dropped
 * and platform and channel calls refused.
 */
export class ExecutionControl implements DispatchControl {
  #over = false;
  #answered = false;
  #stopReason: KnownExecutionError | undefined;
  #first: StopListener | undefined;
  #more: StopListener[] | undefined;
  readonly #task: RunnerTask;
  readonly #permissions: PermissionSpec;
  readonly #options: ExecuteOptions;
  readonly #meta: ExecutionMeta;
  readonly #platform: Platform;
  /** Set when an OpenTelemetry SDK records this execution: platform calls become child spans, log entries carry the ids. */
  readonly #telemetry: ExecutionTelemetry | undefined;
  /** Runs host code for this execution (the caller's onStart, onLog, onEvent, its platform services, channel calls) in the async context of its execute() call: made only where some may run. */
  readonly #callersScope: CallersScope | undefined;
  /** Platform calls of this execution started in the host and not yet settled, by name (`platform.kv.get`); made with the first. */
  #pendingCalls: string[] | undefined;
  /** Aborted once the execution is over, for the channel calls still waiting on the host (a paced send); made with the first. */
  #ended: AbortController | undefined;
  /** When its time limit runs out (monotonicNow()), once it was dispatched. */
  endsAt = Number.POSITIVE_INFINITY;

  readonly manifest: PluginManifest;

  constructor(task: RunnerTask, options: ExecuteOptions, meta: ExecutionMeta, platform: Platform, manifest: PluginManifest, telemetry?: ExecutionTelemetry) {
    this.#task = task;
    this.manifest = manifest;
    this.#permissions = task.permissions;
    this.#options = options;
    this.#meta = meta;
    this.#platform = options.platform ?? platform;
    this.#telemetry = telemetry;
    // Made only where host code may be called for it: the caller's callbacks, its platform services, a channel.
    const callsHost = options.platformForward !== undefined || options.channel !== undefined || Object.keys(task.permissions.platform ?? {}).length > 0;
    this.#callersScope = options.onLog || options.onEvent || options.onStart || callsHost ? callersScope() : undefined;
  }

  get stopReason(): KnownExecutionError | undefined {
    return this.#stopReason;
  }

  abortGraceMs(cancelGraceMs: number): number {
    return Math.max(0, Math.min(cancelGraceMs, Math.ceil(this.endsAt - monotonicNow())));
  }

  get keepWorkspace(): boolean {
    return this.#options.keepWorkspace === true;
  }

  /** Whether the result is decided (ended or stopped). */
  get over(): boolean {
    return this.#over;
  }

  /** The backend has the runner's answer in hand (DispatchControl.answered). */
  get hasAnswer(): boolean {
    return this.#answered;
  }

  answered(): void {
    this.#answered = true;
  }

  onStop(listener: StopListener): () => void {
    const reason = this.#stopReason;
    if (reason) {
      queueMicrotask(() => listener(reason));
      return noop;
    }
    // Most executions have one or two listeners (the lifecycle's, the backend's): fields, not an array.
    if (!this.#first) this.#first = listener;
    else (this.#more ??= []).push(listener);
    return () => {
      if (this.#first === listener) this.#first = undefined;
      const at = this.#more?.indexOf(listener) ?? -1;
      if (at >= 0) this.#more!.splice(at, 1);
    };
  }

  /** The result is decided by the runner: nothing more is relayed. */
  end(): void {
    this.#over = true;
    this.#first = undefined;
    this.#more = undefined;
    this.#ended?.abort();
  }

  /**
   * Decide the result as `reason` and tell the backend to stop its runner. Its listeners may
   * still log (a runner's output read so far, a trailing line without its newline): the
   * execution is over once they have run.
   */
  stop(reason: KnownExecutionError): void {
    if (this.#over || this.#stopReason) return;
    this.#stopReason = reason;
    const first = this.#first;
    const more = this.#more;
    this.#first = undefined;
    this.#more = undefined;
    for (const listener of more ? [first, ...more] : [first]) {
      try {
        listener?.(reason);
      } catch {
        // A backend's listener that throws must not keep the others from stopping.
      }
    }
    this.#over = true;
    this.#ended?.abort();
  }

  /** When a runner first took it (setRunner), `monotonicNow()`; noted only where runners are remote (`timesRunner`): the wait for one is queue wait there. */
  runnerTookAt: number | undefined;
  timesRunner = false;

  setRunner(runner: RunnerInfo): void {
    const first = this.#meta.runnerId === undefined;
    if (this.timesRunner) this.runnerTookAt ??= monotonicNow();
    this.#meta.runnerId = runner.id;
    if (runner.pid !== undefined) this.#meta.pid = runner.pid;
    if (runner.threadId !== undefined) this.#meta.workerId = runner.threadId;
    if (runner.host !== undefined) this.#meta.runnerHost = runner.host;
    if (first) this.#started();
  }

  /** A runner took it (the first setRunner): the caller's onStart hears so, once. */
  #started(): void {
    const onStart = this.#options.onStart;
    if (!onStart || this.#over) return;
    try {
      settleQuietly(this.#inCallersContext(onStart), 'onStart');
    } catch (error) {
      callbackFailed('onStart', error);
    }
  }

  /** A host callback, in the caller's async context (its AsyncLocalStorage stores), with the execution span active when traced: not in the one a runner's message arrives in (another execution's). */
  #inCallersContext<T>(callback: () => T): T {
    return this.#inCallersScope(this.#telemetry ? () => this.#telemetry!.within(callback) : callback);
  }

  /** Host code run for this execution (its callbacks, platform services, channel) in the caller's async context: a service reading an AsyncLocalStorage (the tenant of a request) reads the caller's. */
  #inCallersScope<T>(fn: () => T): T {
    return this.#callersScope ? this.#callersScope(fn) : fn();
  }

  reportWorkspace(workspace: RunnerWorkspace): void {
    this.#meta.artifacts = workspace.artifacts;
    if (workspace.truncated) this.#meta.artifactsTruncated = true;
    if (workspace.dir !== undefined) this.#meta.workspaceDir = workspace.dir;
  }

  /** The time its handler must begin by (ExecuteOptions.beginBy), for its runner's task. */
  beginBy(): number {
    return beginByOf(this.#options);
  }

  mayBegin(): boolean {
    const beginBy = this.#options.beginBy;
    if (this.#over) return false;
    // Asked with no such option: a runner's protocol forged by plugin code; nothing to refuse.
    if (!beginBy) return true;
    const refusal = beginRefusal(beginBy, this.#task);
    // The option itself may have stopped it (a queue worker that gives up on it aborts it).
    if (this.#over) return false;
    if (refusal) this.stop(refusal);
    return !refusal;
  }

  outputPace(): Promise<void> | undefined {
    const pace = this.#options.outputPace;
    if (!pace || this.#over) return undefined;
    try {
      const waiting = pace();
      // As a promise of our own: a thenable whose then() throws (or returns nothing) rejects it, where
      // calling that then() would throw in the backend's reading of the runner's messages.
      return waiting !== undefined && typeof waiting?.then === 'function' ? Promise.resolve(waiting) : undefined;
    } catch {
      return undefined;
    }
  }

  log(level: LogEntry['level'], message: string, fields: Record<string, unknown> | undefined, stream: LogEntry['stream'] = 'logger'): void {
    const onLog = this.#options.onLog;
    if (!onLog || this.#over) return;
    try {
      const ids = this.#telemetry?.logIds;
      settleQuietly(this.#inCallersContext(() => onLog({ level, message, ...(fields ? { fields } : {}), stream, executionId: this.#task.executionId, time: Date.now(), ...ids })), 'onLog');
    } catch (error) {
      // A host callback that throws must not fail the execution; it is said once.
      callbackFailed('onLog', error);
    }
  }

  emit(event: unknown): void {
    const onEvent = this.#options.onEvent;
    if (!onEvent || this.#over) return;
    const task = this.#task;
    try {
      settleQuietly(this.#inCallersContext(() => onEvent({ executionId: task.executionId, pluginId: task.pluginId, handlerId: task.handlerId, time: Date.now(), event })), 'onEvent');
    } catch (error) {
      callbackFailed('onEvent', error);
    }
  }

  callPlatform(service: string, method: string, args: unknown[]): Promise<unknown> {
    // Being stopped counts: in-process, a stop's listener fires ctx.signal, whose listeners may call from inside the stop.
    if (this.#over || this.#stopReason) return Promise.reject(callAfterEnd('platform', service, method));
    const subject: PermissionSubject = { pluginId: this.#task.pluginId, handlerId: this.#task.handlerId };
    const forward = this.#options.platformForward;
    // A service this execution's platform lacks goes to the gateway that forwards it (which checks it).
    const call =
      forward && typeof service === 'string' && !(this.#platform && Object.hasOwn(this.#platform, service))
        ? () => forward(service, method, args)
        : () => invokePlatform(this.#platform, this.#permissions, subject, service, method, args);
    const telemetry = this.#telemetry;
    const called = `platform.${String(service)}.${String(method)}`;
    const traced = telemetry ? () => telemetry.platformCall(service, method, call) : call;
    return this.#admit(called, () => this.#held(called, args, () => this.#inCallersScope(traced)));
  }

  callChannel(method: string, args: unknown[]): Promise<unknown> {
    if (this.#over || this.#stopReason) return Promise.reject(callAfterEnd('channel', '', method));
    const channel = this.#options.channel;
    if (!channel) return Promise.reject(new ValidationError('This execution has no WebSocket channel'));
    const ended = (this.#ended ??= endedController()).signal;
    return this.#held(`channel.${String(method)}`, args, () => this.#inCallersScope(() => channel.call(method, args, ended)));
  }

  /** `start()` with its arguments counted against the plugin's MAX_HELD_CALL_BYTES until it settles. */
  #held(called: string, args: unknown[], start: () => Promise<unknown>): Promise<unknown> {
    const pluginId = this.#task.pluginId;
    let bytes: number;
    let promise: Promise<unknown>;
    try {
      bytes = holdCall(pluginId, called, args);
    } catch (error) {
      return Promise.reject(error);
    }
    try {
      promise = Promise.resolve(start());
    } catch (error) {
      promise = Promise.reject(error);
    }
    const release = (): void => releaseCall(pluginId, bytes);
    promise.then(release, release);
    return promise;
  }

  /**
   * Starts a platform call if the execution has fewer than CALLS_IN_FLIGHT in the host. Every
   * runner keeps its calls to that window (the rest wait on its side), so one more can only come
   * from a plugin that writes to the transport itself: the execution is stopped as a runner that
   * broke the protocol, and its runner with it, before its calls can pile up in the host.
   */
  #admit(called: string, start: () => Promise<unknown>): Promise<unknown> {
    if ((this.#pendingCalls?.length ?? 0) >= CALLS_IN_FLIGHT) {
      const error = new WorkerCrashedError(`The runner sent ${called} with ${CALLS_IN_FLIGHT} calls of this execution already in flight; a runner keeps to ${CALLS_IN_FLIGHT} and makes the rest wait`, {
        details: { pluginId: this.#task.pluginId, handlerId: this.#task.handlerId, reason: 'protocol', protocolError: `more than ${CALLS_IN_FLIGHT} platform calls in flight` },
      });
      this.stop(error);
      return Promise.reject(error);
    }
    let promise: Promise<unknown>;
    try {
      promise = Promise.resolve(start());
    } catch (error) {
      return Promise.reject(error);
    }
    const calls = (this.#pendingCalls ??= []);
    calls.push(called);
    const settled = (): void => {
      calls.splice(calls.indexOf(called), 1);
    };
    promise.then(settled, settled);
    return promise;
  }

  /** The platform calls the host has not answered yet (`platform.kv.get`), each once: what a timed-out handler was waiting for. */
  pendingCalls(): string[] {
    return [...new Set(this.#pendingCalls)];
  }
}

function noop(): void {}

/**
 * What tells the channel calls still waiting on the host (a paced send) that their execution is
 * over: each connection they wait on listens to it once (channels' SocketWriter), and one that
 * sends to many connections (`sendTo`) is no leak for Node to warn the host of.
 */
function endedController(): AbortController {
  const controller = new AbortController();
  process.getBuiltinModule('node:events').setMaxListeners(0, controller.signal);
  return controller;
}
