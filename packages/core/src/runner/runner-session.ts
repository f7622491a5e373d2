import { serializeError, deserializeError } from '../error-wire.js';
import type { LogEntry } from '../host/request.js';
import { unserializableError, type HostToRunner, type RunnerResult, type RunnerToHost } from '../protocol.js';
import { runHandler, type RunnerTask, type RuntimeEnvironment } from './handler-runtime.js';
import { createPlatformProxy, type Platform } from './platform-proxy.js';
import { CallWindow } from './call-window.js';
import { callAfterEnd, callCutShort, type CallTarget } from './call-errors.js';

/** A platform or channel call awaiting the host's reply, or (`windowed`, a platform call) its turn to be sent. */
interface PendingCall {
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  /** Held so that, at the end, a call the handler never awaited is marked handled. */
  promise?: Promise<unknown>;
  windowed: boolean;
  /** Handed to the transport (a platform call that has not waits its turn in the window). */
  sent: boolean;
  /** What the call was, for the error that ends it when the execution ends first. */
  called: [CallTarget, string, string];
}

/**
 * Runner side of one execution: runs the task with `ctx.platform` / `ctx.channel` as RPC
 * proxies to the host, streams logs and events, and answers with one `result` message.
 * Calls still pending when the handler finishes are rejected, never left hanging; platform calls
 * it fired beyond CALLS_IN_FLIGHT are sent before the result.
 */
export class RunnerSession implements RuntimeEnvironment {
  readonly #task: RunnerTask;
  readonly #send: (message: RunnerToHost) => void;
  // ctx.signal's controller, made on first read (an AbortSignal costs ~5 µs on Node 20 and most
  // handlers never look at it); a cancel that came first is remembered and applied then.
  #controller: AbortController | undefined;
  #cancelReason: unknown;
  #cancelled = false;
  /** Platform and channel calls awaiting the host's reply, or their turn to be sent; made with the first call. */
  #pending: Map<number, PendingCall> | undefined;
  #nextId = 1;
  /** Keeps calls sent and unanswered to CALLS_IN_FLIGHT; made with the first call. */
  #window: CallWindow | undefined;
  /** The handler has returned or thrown: its result is decided (#finish follows once its fired calls are sent). */
  #returned = false;
  #platform: Platform | undefined;
  /** Settles `mayBegin()`'s question with the host's answer (a cancel answers no). */
  #beginAnswer: ((ok: boolean) => void) | undefined;

  constructor(task: RunnerTask, send: (message: RunnerToHost) => void) {
    this.#task = task;
    this.#send = send;
  }

  /** Feed a message from the host. */
  handle(message: HostToRunner): void {
    if (message.type === 'rpc-reply') {
      const pending = this.#pending?.get(message.id);
      if (!pending) return;
      this.#pending!.delete(message.id);
      if (pending.windowed) this.#window!.leave();
      if (message.ok) pending.resolve(message.value);
      else pending.reject(deserializeError(message.error));
    } else if (message.type === 'begin') {
      this.#answerBegin(message.ok === true);
    } else if (message.type === 'cancel') {
      if (this.#cancelled) return;
      this.#cancelled = true;
      this.#answerBegin(false);
      this.#cancelReason = deserializeError(message.reason);
      // The host refuses calls from here on: none still waiting is sent, nor waited for at the end.
      this.#refuseWaitingCalls();
      this.#controller?.abort(this.#cancelReason);
    }
  }

  /** Run the handler and build the result message (the caller sends it; it may also carry it as a task's return value). */
  async run(): Promise<RunnerResult> {
    let result: RunnerResult;
    try {
      // The session is the handler's runtime environment itself: one object per execution.
      result = { type: 'result', ok: true, data: await runHandler(this.#task, this) };
    } catch (error) {
      result = { type: 'result', ok: false, error: serializeError(error) };
    }
    // Its result is decided: a call it makes from here on (a callback of a call it fired) is
    // refused, as after the end, while those it fired before go out.
    this.#returned = true;
    // Platform calls the handler fired and did not await go before its result (CALLS_IN_FLIGHT).
    if (this.#window) await this.#window.allSent();
    this.#finish();
    return result;
  }

  /** `ctx.signal` (RuntimeEnvironment), made on first read: most handlers never look at it. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#cancelled) this.#controller.abort(this.#cancelReason);
    }
    return this.#controller.signal;
  }

  /** `ctx.platform` (RuntimeEnvironment): an RPC proxy to the host, built on first read. */
  get platform(): Platform {
    return (this.#platform ??= createPlatformProxy((service, method, args) => this.#call('platform', service, method, args)));
  }

  /** `ctx.logger` lines (RuntimeEnvironment). */
  log(level: LogEntry['level'], message: string, fields: Record<string, unknown> | undefined): void {
    this.#post({ type: 'log', level, message, ...(fields ? { fields } : {}) }, 'log fields', fields);
  }

  /** `ctx.emit()` (RuntimeEnvironment). */
  emit(event: unknown): void {
    this.#post({ type: 'event', event }, 'ctx.emit() event', event);
  }

  /** Whether a handler whose `beginBy` passed may still begin (RuntimeEnvironment): the host's answer. */
  mayBegin(): Promise<boolean> {
    if (this.#cancelled) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.#beginAnswer = resolve;
      this.#send({ type: 'may-begin' });
    });
  }

  #answerBegin(ok: boolean): void {
    const answer = this.#beginAnswer;
    this.#beginAnswer = undefined;
    answer?.(ok);
  }

  /** `ctx.channel` calls (RuntimeEnvironment); runHandler only uses it for a task with a channel. */
  channelCall(method: string, args: unknown[]): Promise<unknown> {
    return this.#call('channel', '', method, args);
  }

  /** Send `message`; one that cannot be sent is a ValidationError naming `what`, and where in `named` (its event, its fields) the refused value is. */
  #post(message: RunnerToHost, what: string, named: unknown): void {
    // Once its result is decided, dropped (as in-process), though its fired calls still go out first.
    if (this.#returned) return;
    try {
      this.#send(message);
    } catch (error) {
      throw unserializableError(what, error, named);
    }
  }

  #call(target: 'platform' | 'channel', service: string, method: string, args: unknown[]): Promise<unknown> {
    // Stopped, or its result decided: refused here as the host would refuse it, not queued behind calls the host may never answer.
    if (this.#returned || this.#cancelled) {
      return handled(Promise.reject(callAfterEnd(target, service, method)));
    }
    const id = this.#nextId++;
    const pending = (this.#pending ??= new Map());
    let call!: PendingCall;
    const promise = new Promise((resolve, reject) => (call = { resolve, reject, windowed: target === 'platform', sent: false, called: [target, service, method] }));
    call.promise = promise;
    pending.set(id, call);
    if (target === 'channel') this.#sendCall(id, call, args);
    else (this.#window ??= new CallWindow()).enter(() => this.#sendCall(id, call, args));
    return promise;
  }

  /** Sends a call the window let through; one that cannot be sent is rejected and frees its place. */
  #sendCall(id: number, call: PendingCall, args: unknown[]): void {
    const [target, service, method] = call.called;
    call.sent = true;
    try {
      this.#send({ type: 'rpc', id, target, service, method, args });
    } catch (error) {
      const entry = this.#pending?.get(id);
      this.#pending?.delete(id);
      if (entry?.windowed) this.#window!.leave();
      entry?.reject(unserializableError(`${target === 'platform' ? `platform.${service}.${method}` : `ctx.channel.${method}`} arguments`, error, args));
    }
  }

  /**
   * The execution was stopped: the platform calls still waiting their turn are never sent, and
   * each is refused now (as in-process), not left pending, so that a handler that honours
   * `ctx.signal` and awaits one can still finish within its grace.
   */
  #refuseWaitingCalls(): void {
    if (!this.#window) return;
    this.#window.clear();
    for (const [id, call] of this.#pending!) {
      if (call.sent) continue;
      this.#pending!.delete(id);
      // Marked handled: a call fired and never awaited must not take the runner down.
      handled(call.promise!);
      call.reject(callCutShort(...call.called, (name) => `The execution was stopped while ${name} waited for its turn`));
    }
  }

  #finish(): void {
    this.#window?.clear();
    const pending = this.#pending;
    if (!pending || pending.size === 0) return;
    for (const { reject, promise, called } of pending.values()) {
      // A call the handler fired and never awaited must not become an unhandled rejection that
      // takes the runner down after the result is in; a handler that does await still sees it.
      if (promise) handled(promise);
      reject(callCutShort(...called));
    }
    pending.clear();
  }
}

function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}
