/**
 * Thread side: what a handler leaves to run later without keeping the thread's loop alive, so
 * that HandleWatch (thread-hygiene.ts) cannot see it. Seen through the methods that do it,
 * wrapped when the thread starts, before any plugin code has run on it.
 */
import { createHook } from 'node:async_hooks';
import childProcess from 'node:child_process';
import dgram from 'node:dgram';
import diagnosticsChannel from 'node:diagnostics_channel';
import { getEventListeners } from 'node:events';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import { PerformanceObserver } from 'node:perf_hooks';
import timers from 'node:timers';
import promiseTimers from 'node:timers/promises';
import workerThreads, { Worker } from 'node:worker_threads';
import { constructWithInspectorClosed } from './inspector-lock.js';

const apply = Reflect.apply;
const getPrototypeOf = Object.getPrototypeOf;
const then = Promise.prototype.then;
const signalGetter = (name: 'aborted' | 'onabort'): ((this: AbortSignal) => unknown) => Object.getOwnPropertyDescriptor(AbortSignal.prototype, name)!.get!;
const aborted = signalGetter('aborted');
const onabort = signalGetter('onabort');
/** Taken now: read from the module at each call, a handler's replacement would answer. */
const listenersOf = getEventListeners;

/**
 * Unref'd sockets a thread may keep open (a keep-alive pool's idle ones: fetch keeps one or two
 * per origin) before it is retired: an `http.Agent` made per execution leaves its sockets each time.
 */
const MAX_UNREF_SOCKETS = 64;

/** This thread's heap caps (its lane's memoryMb or resourceLimits; else V8's defaults), taken before plugin code runs. */
const threadLimits = { ...workerThreads.resourceLimits };

/**
 * A Worker's constructor arguments with heap caps no larger than this thread's: a Worker a
 * handler starts would otherwise grow the host past the handler's memoryMb (each such Worker is
 * capped as its thread is; a smaller cap asked for stays).
 */
function withinThreadLimits(args: unknown[]): unknown[] {
  const [filename, options] = args as [unknown, { resourceLimits?: Record<string, unknown> } | undefined];
  const asked = options && typeof options === 'object' && options.resourceLimits && typeof options.resourceLimits === 'object' ? options.resourceLimits : {};
  const limits: Record<string, unknown> = { ...asked };
  for (const key of ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb'] as const) {
    const cap = threadLimits[key] ?? 0;
    const wanted = limits[key];
    if (cap > 0 && !(typeof wanted === 'number' && wanted > 0 && wanted < cap)) limits[key] = cap;
  }
  return [filename, { ...options, resourceLimits: limits }, ...args.slice(2)];
}

/** Whether a call of the wrapped method leaves something behind, from its arguments. */
type Leaves = (args: unknown[]) => boolean;

/**
 * What an execution left: `resource` — a thread, a process, a server, a UDP socket or a file
 * watcher that goes on (the thread is retired at once: more of them would pile up); `later` — code
 * to run later (a timer, a socket's callbacks, a wait, an async hook), which the same handler may
 * meet on the thread as it meets its module's state, but no other handler (retireReason).
 */
export type LeftBehind = 'resource' | 'later' | undefined;

/**
 * Seen: a timer or immediate unref'd; a nested Worker still running (ref'd or not: it can still
 * emit 'exit' or 'message' later); a socket, server, UDP socket or child process unref'd; a file watcher that
 * is not persistent or unref'd; a timer through `timers._unrefActive`; an `Atomics.waitAsync` not
 * settled (it would go on during another plugin's execution); an async hook enabled (it would see
 * another plugin's execution); a signal of `AbortSignal.timeout` (or `AbortSignal.any`) not yet
 * aborted with an 'abort' listener on it (its timer, unref'd, would run that listener later: one
 * with none runs no plugin code). A handler that replaces a wrapper is caught too. Not seen: a port or
 * BroadcastChannel unref'd, the same methods of another realm (`vm`), and work on Node's thread
 * pool whose callback comes later (zlib, crypto, WebAssembly compiling): docs/backends/worker-pool.md.
 */
export class LaterWatch {
  #seenLater = false;
  #seenResource = false;
  /** Inside AbortSignal.timeout: its timer's unref() is not seen (the signal is: #signals). */
  #inSignalTimeout = false;
  /** Atomics.waitAsync calls not settled yet. */
  #waiting = 0;
  /** Sockets unref'd on this thread (a keep-alive pool's idle ones), until seen destroyed. */
  readonly #sockets = new Set<net.Socket>();
  /** Signals of AbortSignal.timeout and AbortSignal.any made on this thread, looked at again after every execution until aborted or collected. */
  readonly #signals = new Set<WeakRef<AbortSignal>>();
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
    for (const [holder, method, leaves, kind] of [
      [getPrototypeOf(timeout), 'unref', always, 'later'],
      // An immediate runs at the loop's next turn, whoever's execution that is: nothing to keep the thread for.
      [getPrototypeOf(immediate), 'unref', always, 'resource'],
      [Worker.prototype, 'unref', always, 'resource'],
      [net.Socket.prototype, 'unref', always, 'later'],
      [net.Server.prototype, 'unref', always, 'resource'],
      [dgram.Socket.prototype, 'unref', always, 'resource'],
      [childProcess.ChildProcess.prototype, 'unref', always, 'resource'],
      [timers, '_unrefActive', always, 'later'],
      [getPrototypeOf(createHook({})), 'enable', always, 'later'],
      [promiseTimers, 'setTimeout', optionOff(2, 'ref'), 'later'],
      [promiseTimers, 'setInterval', optionOff(2, 'ref'), 'later'],
      [getPrototypeOf(promiseTimers.scheduler), 'wait', optionOff(1, 'ref'), 'later'],
      [fs, 'watch', optionOff(1, 'persistent'), 'resource'],
      [fs, 'watchFile', optionOff(1, 'persistent'), 'resource'],
      // A subscriber's code runs when anyone publishes (an APM library's on undici's channels sees
      // every later fetch): another handler's task is declined on the thread.
      [diagnosticsChannel, 'subscribe', always, 'later'],
      ...channelPrototypes().flatMap((proto) => [[proto, 'subscribe', always, 'later'] as const, [proto, 'bindStore', always, 'later'] as const]),
      [PerformanceObserver.prototype, 'observe', always, 'later'],
    ] as const) {
      this.#wrap(holder as Record<string, unknown>, method, leaves, kind);
    }
    this.#watchWaitAsync();
    this.#watchSignals();
    // A watcher's own unref(): its class is not exported, so its prototype is wrapped when the first one is made.
    for (const method of ['watch', 'watchFile'] as const) this.#wrapReturned(fs as unknown as Record<string, unknown>, method);
    // An ES module that imports them gets the wrappers too.
    syncBuiltinESMExports();
  }

  #wrap(holder: Record<string, unknown>, method: string, leaves: Leaves, kind: 'later' | 'resource'): void {
    const original = holder[method] as (...args: unknown[]) => unknown;
    if (typeof original !== 'function') return;
    const watch = this;
    const wrapper = function (this: unknown, ...args: unknown[]): unknown {
      if (!watch.#inSignalTimeout && leaves(args)) {
        if (kind === 'later') watch.#seenLater = true;
        else watch.#seenResource = true;
        if (method === 'unref' && this instanceof net.Socket) watch.#sockets.add(this);
      }
      return apply(original, this, args);
    };
    this.#replace(holder, method, wrapper);
  }

  #replace(holder: Record<string, unknown>, method: string, wrapper: unknown): void {
    // A holder frozen by --frozen-intrinsics (which threads inherit; Atomics): its method stays
    // unwatched, and no handler can replace it either.
    if (!Reflect.set(holder, method, wrapper)) return;
    this.#wrapped.push([holder, method, wrapper]);
  }

  /** An `Atomics.waitAsync` counts until its promise settles: one awaited to the end leaves nothing. */
  #watchWaitAsync(): void {
    const original = (Atomics as unknown as Record<string, unknown>).waitAsync as ((...args: unknown[]) => { async: boolean; value: unknown }) | undefined;
    if (typeof original !== 'function') return;
    const watch = this;
    const settled = (): void => {
      watch.#waiting--;
    };
    this.#replace(Atomics as unknown as Record<string, unknown>, 'waitAsync', function (this: unknown, ...args: unknown[]) {
      const result = apply(original, this, args);
      if (result.async === true) {
        watch.#waiting++;
        apply(then, result.value, [settled, settled]);
      }
      return result;
    });
  }

  /** The signals of AbortSignal.timeout and AbortSignal.any (which follows its sources) are kept to be looked at (#signalLeftListened). */
  #watchSignals(): void {
    const watch = this;
    const statics = AbortSignal as unknown as Record<string, unknown>;
    for (const method of ['timeout', 'any'] as const) {
      const original = statics[method] as ((...args: unknown[]) => AbortSignal) | undefined;
      if (typeof original !== 'function') continue;
      this.#replace(statics, method, function (this: unknown, ...args: unknown[]) {
        const outer = watch.#inSignalTimeout;
        watch.#inSignalTimeout = method === 'timeout';
        let signal: AbortSignal;
        try {
          signal = apply(original, this, args);
        } finally {
          watch.#inSignalTimeout = outer;
        }
        watch.#signals.add(new WeakRef(signal));
        return signal;
      });
    }
  }

  /** A watched signal its timer has not aborted yet, with an 'abort' listener that would run then. */
  #signalLeftListened(): boolean {
    for (const ref of this.#signals) {
      const signal = ref.deref();
      if (signal === undefined || apply(aborted, signal, []) === true) this.#signals.delete(ref);
      else if (listenersOf(signal, 'abort').length > 0 || apply(onabort, signal, []) != null) return true;
    }
    return false;
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
        watch.#wrap(getPrototypeOf(made) as Record<string, unknown>, 'unref', always, 'resource');
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
    const threadId = Object.getOwnPropertyDescriptor(Original.prototype, 'threadId')?.get;
    this.#running = (worker) => (threadId ? apply(threadId, worker, []) !== -1 : true);
    const Counted = function Worker(this: unknown, ...args: unknown[]): object {
      if (new.target === undefined) throw new TypeError("Class constructor Worker cannot be invoked without 'new'");
      const worker = constructWithInspectorClosed(Original, args, new.target, withinThreadLimits);
      running.add(worker);
      return worker;
    };
    Object.defineProperty(Counted, 'name', { value: 'Worker' });
    Counted.prototype = Original.prototype;
    Object.defineProperty(Original.prototype, 'constructor', { value: Counted, writable: true, configurable: true, enumerable: false });
    Object.setPrototypeOf(Counted, Object.getPrototypeOf(Original));
    (workerThreads as unknown as { Worker: unknown }).Worker = Counted;
  }

  /**
   * What the thread's handlers left since the last end(): what the thread's next execution would
   * meet. Looked at after each execution (end) and when another handler's task comes (pending):
   * code a handler sets up after its answer (a few awaits on) is seen then, not missed.
   */
  end(): LeftBehind {
    const left = this.pending();
    this.#seenLater = false;
    this.#seenResource = false;
    return left;
  }

  /** What is left now, without forgetting what was seen (end() does). A wrapper replaced hides what comes after: a resource. */
  pending(): LeftBehind {
    for (const worker of this.#workers) if (!this.#running(worker)) this.#workers.delete(worker);
    if (this.#workers.size > 0 || this.#seenResource || this.#openSockets() > MAX_UNREF_SOCKETS) return 'resource';
    for (let i = 0; i < this.#wrapped.length; i++) {
      const [holder, method, wrapper] = this.#wrapped[i]!;
      if (holder[method] !== wrapper) return 'resource';
    }
    return this.#seenLater || this.#waiting > 0 || this.#signalLeftListened() ? 'later' : undefined;
  }

  /** Unref'd sockets still open (an idle keep-alive pool's): past MAX_UNREF_SOCKETS the thread is retired, whoever left them. */
  #openSockets(): number {
    for (const socket of this.#sockets) if (socket.destroyed) this.#sockets.delete(socket);
    return this.#sockets.size;
  }
}

/** A diagnostics channel's prototypes: one with no subscriber (Channel) and one with some (ActiveChannel), which it switches between. */
function channelPrototypes(): object[] {
  const channel = diagnosticsChannel.channel('kb-plugin-execution:later-watch');
  const idle = getPrototypeOf(channel) as object;
  channel.subscribe(noop);
  const active = getPrototypeOf(channel) as object;
  channel.unsubscribe(noop);
  return active === idle ? [idle] : [idle, active];
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
