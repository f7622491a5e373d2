import { deserializeError, type BackendOptions, type IsolationReport, type LogEntry, type Platform } from '@kb-labs/plugin-execution-core';
import { BaseBackend, CallWindow, callAfterEnd, callCutShort, type CallTarget, LargeAnswerTurns, backendOptionsSchema, cloneForWire, createPlatformProxy, hostCallError, isLargeAnswer, runHandler, stopSignal, type DispatchControl, type RunnerTask, type RuntimeEnvironment } from '@kb-labs/plugin-execution-core/backend-kit';

/** The host process is the runner of every execution. */
const RUNNER = Object.freeze({ id: `pid:${process.pid}`, pid: process.pid });

/** Options of the in-process backend: exactly the common ones. */
export type InProcessBackendOptions = BackendOptions;

/**
 * Runs handlers in the host's own process, on its event loop.
 *
 * Fastest backend, no isolation: a handler shares memory, globals, env, fs and network with the host.
 * It cannot preempt synchronous code: a `while (true) {}` handler blocks the host and its timeout
 * can only be reported once the loop yields. Async handlers get TIMEOUT on time, with `ctx.signal`
 * fired, but keep running in the background if they ignore the signal. Use the worker-pool or
 * subprocess backend for plugins you do not trust.
 *
 * Inputs, results, events and platform arguments are structured-cloned, so a handler sees (and
 * returns) exactly what it would on the other backends.
 */
export class InProcessBackend extends BaseBackend {
  constructor(options: InProcessBackendOptions = {}) {
    super('in-process', options, { concurrency: 64, releaseSlotOnStop: true, optionsSchema: backendOptionsSchema() });
  }

  protected async dispatch(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    control.setRunner(RUNNER);
    // task.input is already this execution's own copy, made by core when execute() was called.
    const runtime = new InProcessRuntime(control);
    let data: unknown;
    try {
      data = await runHandler(task, runtime);
    } catch (error) {
      runtime.decided();
      await runtime.allCallsStarted();
      throw error;
    }
    // What a getter of the result logs or emits as it is copied comes after the result: dropped,
    // as where the handler runs in another thread or process.
    runtime.decided();
    // Not `await undefined` on every execution: most make no platform call.
    const started = runtime.allCallsStarted();
    if (started) await started;
    return cloneForWire(data, 'handler result');
  }

  protected async closeRunners(): Promise<void> {
    // Nothing of its own: the host process is the runner.
  }

  protected isolation(): IsolationReport {
    return {
      requested: 'none',
      active: 'none',
      layers: [],
      reason: "handlers run on the host's own thread, with its memory, files, network, environment and signals",
    };
  }
}

/**
 * The handler's runtime for one execution, with copies where a boundary would copy. A class, not
 * an object literal with getters: it is made for every execution, and a literal's getters are new
 * functions each time, so V8 would give every one a hidden class of its own. The signal and the
 * platform proxy are built on first read: most handlers use neither.
 */
class InProcessRuntime implements RuntimeEnvironment {
  readonly #control: DispatchControl;
  #platform: Platform | undefined;
  #window: CallWindow | undefined;
  #decided = false;
  /** Answers copied in the order they settle, a large one in a turn of the event loop of its own. */
  readonly #turns = new LargeAnswerTurns();

  constructor(control: DispatchControl) {
    this.#control = control;
  }

  #signal: AbortSignal | undefined;

  get signal(): AbortSignal {
    return (this.#signal ??= stopSignal(this.#control));
  }

  get platform(): Platform {
    const control = this.#control;
    return (this.#platform ??= createPlatformProxy((service, method, args) => {
      const called = `platform.${service}.${method}`;
      const copy = cloneForWire(args, `${called} arguments`);
      return this.#answered(this.#inWindow(() => control.callPlatform(service, method, copy), service, method), called, ['platform', service, method]);
    }));
  }

  /** As out of process: at most CALLS_IN_FLIGHT platform calls in the host, the rest wait their turn. */
  #inWindow(start: () => Promise<unknown>, service: string, method: string): Promise<unknown> {
    // Made once stopped (from a ctx.signal listener), or once the handler's result is decided (a
    // getter of the result, read as it is copied): refused now, as the host refuses it where the
    // handler runs in another thread or process, not started, nor queued behind calls in flight.
    if (this.#decided || this.#control.stopReason) return Promise.reject(callAfterEnd('platform', service, method));
    const window = this.#window ?? this.#openWindow();
    const { promise, resolve, reject } = deferred();
    window.enter(() => {
      const stopped = this.#control.stopReason;
      if (stopped) {
        // Waited past a timeout or an abort: refused as the host refuses it (#answered keeps it
        // from being an unhandled rejection in the host's process if the handler never awaited it).
        window.leave();
        reject(callCutShort('platform', service, method, (call) => `The execution was stopped while ${call} waited for its turn`));
        return;
      }
      start().then(
        (value) => (window.leave(), resolve(value)),
        (error: unknown) => (window.leave(), reject(error)),
      );
    });
    return promise;
  }

  #openWindow(): CallWindow {
    const window = (this.#window = new CallWindow());
    // Stopped (time limit, abort): the calls still waiting are refused now, not one by one as
    // the host's services answer the ones in flight (which may be never).
    this.#control.onStop(() => window.flush());
    return window;
  }

  /** Its task's beginBy passed (a long load): the host's own answer, at once. */
  mayBegin(): boolean {
    return this.#control.mayBegin();
  }

  /** Platform calls the handler fired and did not await start before its result goes. */
  allCallsStarted(): Promise<void> | undefined {
    return this.#window?.allSent();
  }

  /** Its handler returned or threw: what it logs or emits from now on is dropped. */
  decided(): void {
    this.#decided = true;
  }

  // What the handler logs or emits once its result is decided (from a ctx.signal listener, run as
  // the stop fires; from a getter of its result) is dropped, as it is where the handler runs in
  // another thread or process.
  log(level: LogEntry['level'], message: string, fields: Record<string, unknown> | undefined): void {
    if (!this.#decided && !this.#control.stopReason) this.#control.log(level, message, fields);
  }

  emit(event: unknown): void {
    if (!this.#decided && !this.#control.stopReason) this.#control.emit(cloneForWire(event, 'ctx.emit() event'));
  }

  /** As a platform call (#answered). */
  channelCall(method: string, args: unknown[]): Promise<unknown> {
    const copy = cloneForWire(args, `ctx.channel.${method} arguments`);
    const call = this.#decided ? Promise.reject(callAfterEnd('channel', '', method)) : this.#control.callChannel(method, copy);
    return this.#answered(call, `channel.${method}`, ['channel', '', method]);
  }

  /**
   * A platform or channel call's answer as the handler gets it on the other backends: the result a
   * copy, and a rejection a copy too, its stack cut to the call (`at platform.db.query (the host)`):
   * the host's own error object, its frames and paths, stay the host's. One refused once the
   * execution is over (stopped, or its result decided: a call that waited its turn past a timeout,
   * one from a timer the handler left) is, as out of process, no unhandled rejection that takes the
   * host down when the handler never awaited it; a handler that does await it still sees it.
   */
  #answered(call: Promise<unknown>, called: string, which: [CallTarget, string, string]): Promise<unknown> {
    const answer: Promise<unknown> = call
      .then((value) => this.#copiedInTurn(value, called, which))
      .catch((error: unknown) => {
        if (this.#decided || this.#control.stopReason) void answer.catch(() => undefined);
        throw deserializeError(hostCallError(error, called));
      });
    return answer;
  }

  /**
   * A copy of the answer: now, unless a large one was copied in this turn of the event loop; then
   * in order once it has turned, and not at all if the execution was stopped meanwhile.
   */
  #copiedInTurn(value: unknown, called: string, which: [CallTarget, string, string]): unknown {
    let outcome: { copy: unknown } | { error: unknown } | undefined;
    let waiting: ReturnType<typeof deferred> | undefined;
    this.#turns.run((waited) => {
      try {
        if (waited && this.#control.stopReason) throw callCutShort(...which, (call) => `The execution was stopped while the answer of ${call} waited for its turn`);
        outcome = { copy: cloneForWire(value, `${called} result`) };
      } catch (error) {
        outcome = { error };
      }
      if (waiting) 'copy' in outcome ? waiting.resolve(outcome.copy) : waiting.reject(outcome.error);
      return 'copy' in outcome && isLargeAnswer(outcome.copy);
    });
    if (outcome === undefined) return (waiting = deferred()).promise;
    if ('error' in outcome) throw outcome.error;
    return outcome.copy;
  }
}

function deferred(): { promise: Promise<unknown>; resolve: (value: unknown) => void; reject: (error: unknown) => void } {
  let resolve!: (value: unknown) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<unknown>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
