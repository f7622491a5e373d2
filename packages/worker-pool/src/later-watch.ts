/**
 * Thread side: what a handler leaves to run later without keeping the thread's loop alive, so
 * that HandleWatch (thread-hygiene.ts) cannot see it. Seen through the methods that do it,
 * wrapped when the thread starts, before any plugin code has run on it.
 */
import { createHook } from 'node:async_hooks';
import childProcess from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import timers from 'node:timers';
import promiseTimers from 'node:timers/promises';
import workerThreads, { Worker } from 'node:worker_threads';

const apply = Reflect.apply;
const getPrototypeOf = Object.getPrototypeOf;

/** Whether a call of the wrapped method leaves something behind, from its arguments. */
type Leaves = (args: unknown[]) => boolean;

/**
 * Seen: a timer or immediate unref'd; a nested Worker still running (ref'd or not: it can still
 * emit 'exit' or 'message' later); a socket, server, UDP socket or child process unref'd; a file watcher that
 * is not persistent or unref'd; a timer through `timers._unrefActive`; an `Atomics.waitAsync` (it
 * would go on during another plugin's execution); an async hook enabled (it would see another
 * plugin's execution). A handler that replaces a wrapper is caught too. Not seen: a port or
 * BroadcastChannel unref'd, the same methods of another realm (`vm`), and work on Node's thread
 * pool whose callback comes later (zlib, crypto, WebAssembly compiling): docs/backends/worker-pool.md.
 */
export class LaterWatch {
  #during = false;
  #seen = false;
  readonly #wrapped: Array<[Record<string, unknown>, string, unknown]> = [];
  /** Nested Workers started on this thread and not seen gone yet. */
  readonly #workers = new Set<object>();
  /** Whether a nested Worker's thread still runs (its own `threadId` getter, captured at start). */
  #running: (worker: object) => boolean = () => true;

  constructor() {
    this.#watchNestedWorkers();
    const timeout = setTimeout(noop, 0);
    const immediate = setImmediate(noop);
    clearTimeout(timeout);
    clearImmediate(immediate);
    for (const [holder, method, leaves] of [
      [getPrototypeOf(timeout), 'unref', always],
      [getPrototypeOf(immediate), 'unref', always],
      [Worker.prototype, 'unref', always],
      [net.Socket.prototype, 'unref', always],
      [net.Server.prototype, 'unref', always],
      [dgram.Socket.prototype, 'unref', always],
      [childProcess.ChildProcess.prototype, 'unref', always],
      [timers, '_unrefActive', always],
      [Atomics, 'waitAsync', always],
      [getPrototypeOf(createHook({})), 'enable', always],
      [promiseTimers, 'setTimeout', optionOff(2, 'ref')],
      [promiseTimers, 'setInterval', optionOff(2, 'ref')],
      [getPrototypeOf(promiseTimers.scheduler), 'wait', optionOff(1, 'ref')],
      [fs, 'watch', optionOff(1, 'persistent')],
      [fs, 'watchFile', optionOff(1, 'persistent')],
    ] as const) {
      this.#wrap(holder as Record<string, unknown>, method, leaves);
    }
    // A watcher's own unref(): its class is not exported, so its prototype is wrapped when the first one is made.
    for (const method of ['watch', 'watchFile'] as const) this.#wrapReturned(fs as unknown as Record<string, unknown>, method);
    // An ES module that imports them gets the wrappers too.
    syncBuiltinESMExports();
  }

  #wrap(holder: Record<string, unknown>, method: string, leaves: Leaves): void {
    const original = holder[method] as (...args: unknown[]) => unknown;
    if (typeof original !== 'function') return;
    const watch = this;
    const wrapper = function (this: unknown, ...args: unknown[]): unknown {
      if (watch.#during && leaves(args)) watch.#seen = true;
      return apply(original, this, args);
    };
    holder[method] = wrapper;
    this.#wrapped.push([holder, method, wrapper]);
  }

  /** After the wrapper of `holder[method]`: the first object it returns gets its prototype's `unref` wrapped. */
  #wrapReturned(holder: Record<string, unknown>, method: string): void {
    const entry = this.#wrapped.find(([h, m]) => h === holder && m === method);
    if (!entry) return;
    const inner = holder[method] as (...args: unknown[]) => unknown;
    const watch = this;
    let done = false;
    const wrapper = function (this: unknown, ...args: unknown[]): unknown {
      const made = apply(inner, this, args);
      if (!done && made !== null && typeof made === 'object') {
        done = true;
        watch.#wrap(getPrototypeOf(made) as Record<string, unknown>, 'unref', always);
      }
      return made;
    };
    holder[method] = wrapper;
    entry[2] = wrapper;
  }

  /**
   * A nested Worker still running when an execution ends would go on during the next one (its
   * 'exit' and 'message' listeners run there), ref'd or not: on Node 20 a running Worker is not
   * among the loop's active resources, so HandleWatch cannot see it. `worker_threads.Worker` is
   * replaced by a constructor that keeps each Worker made, until the `threadId` getter captured
   * here says its thread is gone (-1): an 'exit' a handler emits itself proves nothing. The
   * original class is reached through neither `Worker.prototype.constructor` nor the prototype
   * chain of the replacement.
   */
  #watchNestedWorkers(): void {
    const running = this.#workers;
    const Original = Worker;
    const construct = Reflect.construct;
    const threadId = Object.getOwnPropertyDescriptor(Original.prototype, 'threadId')?.get;
    this.#running = (worker) => (threadId ? apply(threadId, worker, []) !== -1 : true);
    const Counted = function Worker(this: unknown, ...args: unknown[]): object {
      if (new.target === undefined) throw new TypeError("Class constructor Worker cannot be invoked without 'new'");
      const worker = construct(Original, args, new.target) as object;
      running.add(worker);
      return worker;
    };
    Object.defineProperty(Counted, 'name', { value: 'Worker' });
    Counted.prototype = Original.prototype;
    Object.defineProperty(Original.prototype, 'constructor', { value: Counted, writable: true, configurable: true, enumerable: false });
    Object.setPrototypeOf(Counted, Object.getPrototypeOf(Original));
    (workerThreads as unknown as { Worker: unknown }).Worker = Counted;
  }

  begin(): void {
    this.#during = true;
    this.#seen = false;
  }

  /** Ends the watch of an execution: true when it left something to run later. */
  end(): boolean {
    this.#during = false;
    for (const worker of this.#workers) if (!this.#running(worker)) this.#workers.delete(worker);
    if (this.#workers.size > 0) return true;
    for (let i = 0; i < this.#wrapped.length; i++) {
      const [holder, method, wrapper] = this.#wrapped[i]!;
      if (holder[method] !== wrapper) return true;
    }
    return this.#seen;
  }
}

function always(): boolean {
  return true;
}

/**
 * Whether the options at `args[at]` set `name` to false (`{ ref: false }`, `{ persistent: false }`).
 * Read once: the call gets a plain copy of what was read, so a getter cannot answer one way here
 * and another to Node.
 */
function optionOff(at: number, name: 'ref' | 'persistent'): Leaves {
  return (args) => {
    const options = args[at];
    if (typeof options !== 'object' || options === null) return false;
    const copy = { ...(options as Record<string, unknown>) };
    args[at] = copy;
    return copy[name] === false;
  };
}

function noop(): void {}
