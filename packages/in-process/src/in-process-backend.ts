import { type BackendOptions, type IsolationReport, type LogEntry, type Platform } from '@kb-labs/plugin-execution-core';
import { BaseBackend, backendOptionsSchema, cloneForWire, createPlatformProxy, runHandler, stopSignal, type DispatchControl, type RunnerTask, type RuntimeEnvironment } from '@kb-labs/plugin-execution-core/backend-kit';

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
    // The task is this execution's own object: replacing its input with a copy is safe.
    task.input = cloneForWire(task.input, 'input');
    const data = await runHandler(task, new InProcessRuntime(control));
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

  constructor(control: DispatchControl) {
    this.#control = control;
  }

  #signal: AbortSignal | undefined;

  get signal(): AbortSignal {
    return (this.#signal ??= stopSignal(this.#control));
  }

  get platform(): Platform {
    const control = this.#control;
    return (this.#platform ??= createPlatformProxy((service, method, args) =>
      control
        .callPlatform(service, method, cloneForWire(args, `platform.${service}.${method} arguments`))
        .then((value) => cloneForWire(value, `platform.${service}.${method} result`)),
    ));
  }

  log(level: LogEntry['level'], message: string, fields: Record<string, unknown> | undefined): void {
    this.#control.log(level, message, fields);
  }

  emit(event: unknown): void {
    this.#control.emit(cloneForWire(event, 'ctx.emit() event'));
  }

  channelCall(method: string, args: unknown[]): Promise<unknown> {
    return this.#control.callChannel(method, cloneForWire(args, `ctx.channel.${method} arguments`));
  }
}
