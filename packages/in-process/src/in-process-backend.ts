import {
  BaseBackend,
  cloneForWire,
  createPlatformProxy,
  runHandler,
  type BackendOptions,
  type DispatchControl,
  type IsolationReport,
  type Platform,
  type RunnerTask,
} from '@kb-labs/plugin-execution-core';

const RUNNER = Object.freeze({ pid: process.pid });

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
    super('in-process', options, { concurrency: 64, releaseSlotOnStop: true });
  }

  protected async dispatch(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    control.setRunner(RUNNER);
    // The task is this execution's own object: replacing its input with a copy is safe.
    task.input = cloneForWire(task.input, 'input');
    let platform: Platform | undefined;
    const data = await runHandler(task, {
      // Getters: the signal and the platform proxy cost something to build, and most handlers use neither.
      get signal() {
        return control.signal;
      },
      get platform() {
        return (platform ??= createPlatformProxy((service, method, args) =>
          control
            .callPlatform(service, method, cloneForWire(args, `platform.${service}.${method} arguments`))
            .then((value) => cloneForWire(value, `platform.${service}.${method} result`)),
        ));
      },
      log: (level, message, fields) => control.log(level, message, fields),
      emit: (event) => control.emit(cloneForWire(event, 'ctx.emit() event')),
      channelCall: (method, args) => control.callChannel(method, cloneForWire(args, `ctx.channel.${method} arguments`)),
    });
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
