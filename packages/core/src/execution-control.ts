import { AbortedError, ValidationError, type ExecutionError } from './errors.js';
import type { RunnerTask } from './handler-runtime.js';
import type { PermissionSubject } from './permissions.js';
import { invokePlatform, type Platform } from './platform-gateway.js';
import type { ResolvedHandler } from './plugin-registry.js';
import type { ExecuteOptions, LogEntry } from './request.js';
import type { HostServices } from './runner-protocol.js';
import type { ExecutionMeta } from './types.js';

/** The host side of one execution, handed to `dispatch`. */
export interface DispatchControl extends HostServices {
  /**
   * Fires on timeout, abort and shutdown; `reason` is the ExecutionError reported. The backend must then stop the runner.
   * Created on first read (an AbortSignal costs ~5 µs on Node 20); read after a stop, it is already aborted.
   */
  readonly signal: AbortSignal;
  /**
   * The same stop as `signal`, as a plain callback (one listener; a later call replaces it, undefined
   * removes it): called synchronously on timeout, abort and shutdown, right after `signal` fires.
   * Lets a backend learn of a stop without making the AbortSignal exist.
   */
  onStop(listener: ((reason: ExecutionError) => void) | undefined): void;
  readonly handler: ResolvedHandler;
  /** Report which thread / process runs it (goes into `meta`). */
  setRunner(info: { workerId?: number; pid?: number }): void;
  /**
   * The runner has begun the execution now: its time limit starts. Only backends constructed with
   * `reportsStart` call it (for the others the execution starts when it is dispatched); later calls
   * do nothing.
   */
  started(): void;
  /** Whether the execution has started (see `started()`). */
  readonly hasStarted: boolean;
}

/**
 * One execution in flight, as BaseBackend tracks it: a class rather than an object of closures,
 * because it is made for every execution and its methods are the hot path's allocations.
 */
export class ExecutionControl implements DispatchControl {
  readonly handler: ResolvedHandler;
  /** Set once the result is decided: late logs, events and calls are dropped or refused. */
  over = false;
  hasStarted = false;
  /** BaseBackend's start hook (the timer), for backends that report the start themselves. */
  onStarted: (() => void) | undefined;
  #controller: AbortController | undefined;
  #stopReason: ExecutionError | undefined;
  #stopListener: ((reason: ExecutionError) => void) | undefined;
  readonly #task: RunnerTask;
  readonly #options: ExecuteOptions;
  readonly #meta: ExecutionMeta;
  readonly #platform: Platform;

  constructor(task: RunnerTask, handler: ResolvedHandler, options: ExecuteOptions, meta: ExecutionMeta, platform: Platform) {
    this.#task = task;
    this.handler = handler;
    this.#options = options;
    this.#meta = meta;
    this.#platform = platform;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#stopReason) this.#controller.abort(this.#stopReason);
    }
    return this.#controller.signal;
  }

  onStop(listener: ((reason: ExecutionError) => void) | undefined): void {
    this.#stopListener = listener;
  }

  /** Fire the signal and the stop listener with `reason` (BaseBackend decides the result). */
  stop(reason: ExecutionError): void {
    this.#stopReason = reason;
    this.#controller?.abort(reason);
    this.#stopListener?.(reason);
  }

  started(): void {
    if (this.hasStarted) return;
    this.hasStarted = true;
    this.onStarted?.();
  }

  setRunner(info: { workerId?: number; pid?: number }): void {
    if (info.workerId !== undefined) this.#meta.workerId = info.workerId;
    if (info.pid !== undefined) this.#meta.pid = info.pid;
  }

  log(level: LogEntry['level'], message: string, fields: Record<string, unknown> | undefined, stream: LogEntry['stream'] = 'logger'): void {
    const onLog = this.#options.onLog;
    if (!onLog || this.over) return;
    try {
      onLog({ level, message, ...(fields ? { fields } : {}), stream, executionId: this.#task.executionId, time: Date.now() });
    } catch {
      // A host callback that throws must not fail the execution.
    }
  }

  emit(event: unknown): void {
    const onEvent = this.#options.onEvent;
    if (!onEvent || this.over) return;
    const task = this.#task;
    try {
      onEvent({ executionId: task.executionId, pluginId: task.pluginId, handlerId: task.handlerId, time: Date.now(), event });
    } catch {
      // As above.
    }
  }

  callPlatform(service: string, method: string, args: unknown[]): Promise<unknown> {
    if (this.over) return Promise.reject(new AbortedError('platform call after the execution ended', { details: { service, method } }));
    const subject: PermissionSubject = { pluginId: this.handler.pluginId, handlerId: this.handler.handlerId };
    return invokePlatform(this.#platform, this.handler.permissions, subject, service, method, args);
  }

  callChannel(method: string, args: unknown[]): Promise<unknown> {
    if (this.over) return Promise.reject(new AbortedError('channel call after the execution ended', { details: { method } }));
    const channel = this.#options.channel;
    if (!channel) return Promise.reject(new ValidationError('This execution has no WebSocket channel'));
    return channel.call(method, args);
  }
}
