import type { AsyncLocalStorage } from 'node:async_hooks';
import type { ShutdownOptions } from '../types.js';
import { validationError, type ValidationIssue } from '../validation.js';
import { thrownText } from '../wire-value.js';
import { MAX_TIMER_MS } from './deadlines.js';
import { nearest, unknownKeyMessage } from './nearest-name.js';
import type { ShutdownDeadline } from './shutdown-deadline.js';

/** What a shutdown listener is told: the shutdown's own `timeoutMs`, within which it should be done. */
export interface ShutdownInfo {
  timeoutMs: number;
}

export type ShutdownListener = (info: ShutdownInfo) => void | Promise<void>;

/**
 * What `onShutdown()` registers: run once, when shutdown() is first called, before the backend
 * stops taking work. A listener that throws or rejects does not stop the shutdown; one that hangs
 * is waited for at most the shutdown's own timeout; one that calls its backend's shutdown() again
 * is waited for until that call (standDownCaller).
 */
export class ShutdownHooks {
  readonly #listeners = new Set<ShutdownListener>();
  /** The shutdown's timeout, once it ran. */
  #ran: number | undefined;
  /** While the listeners run: in each one's async context, what stands it down (standDownCaller). */
  #inListener: AsyncLocalStorage<() => void> | undefined;

  add(listener: ShutdownListener): () => void {
    if (typeof listener !== 'function') throw new TypeError('onShutdown() needs a function');
    if (this.#ran !== undefined) {
      // Registered after the run: it would never be called, so it is called now, before add()
      // returns (what is built on a backend can tell at once that the backend is shut down).
      try {
        void Promise.resolve(listener({ timeoutMs: this.#ran })).catch(() => undefined);
      } catch {
        // As a listener that throws during a shutdown: it does not matter to the shutdown.
      }
      return () => undefined;
    }
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** Run every listener (bounded by the deadline); undefined when there is none, so that the caller may stop at once. */
  run(timeoutMs: number, deadline: ShutdownDeadline): Promise<void> | undefined {
    this.#ran = timeoutMs;
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    if (listeners.length === 0) return undefined;
    const inListener = (this.#inListener = new (process.getBuiltinModule('node:async_hooks').AsyncLocalStorage)());
    const settled = Promise.allSettled(listeners.map((listener) => this.#runOne(inListener, listener, timeoutMs)));
    return deadline.within(settled).then(() => {
      // Only while listeners run: on Node 20 and 22 an enabled AsyncLocalStorage costs every promise of the process a hook.
      inListener.disable();
      this.#inListener = undefined;
    });
  }

  /**
   * Called by a shutdown() that finds one under way: when it runs inside one of the listeners (in
   * its async context, also after its awaits), that listener is no longer waited for, so that one
   * awaiting its own backend's shutdown() (a host's close-everything) lets the shutdown go on
   * instead of waiting for itself until the timeout, as a re-entrant close does in Node's APIs.
   */
  standDownCaller(): void {
    this.#inListener?.getStore()?.();
  }

  /** One listener, settled when it settles or stands down. */
  #runOne(inListener: AsyncLocalStorage<() => void>, listener: ShutdownListener, timeoutMs: number): Promise<void> {
    return new Promise<void>((standDown) => {
      const ran = Promise.resolve().then(() => inListener.run(standDown, () => listener({ timeoutMs })));
      ran.then(() => standDown(), () => standDown());
    });
  }
}

/**
 * The options of a call that waits at most `timeoutMs` (`shutdown()`, a channel mount's
 * `unmount()`, a queue worker's `drain()`), checked as execute()'s are: a `timeoutMs` that is not
 * a whole number of ms from 0 to MAX_TIMER_MS (NaN from a badly parsed setting, or Infinity and
 * 2 ** 31, which reach setTimeout as 1 ms, would stop running work at once) or a misspelt option
 * (`timeout` silently meaning the default) is a ValidationError naming `call`, and nothing is done.
 */
export function checkTimeoutOptions(options: unknown, call: string, defaultMs: number): { timeoutMs: number } {
  // null as "no options", as execute() takes it.
  if (options === undefined || options === null) return { timeoutMs: defaultMs };
  const issues: ValidationIssue[] = [];
  // Read once: a getter is not asked again for the value returned.
  let timeoutMs: unknown;
  if (typeof options !== 'object' || Array.isArray(options)) {
    issues.push({ path: '(options)', message: `must be an object such as { timeoutMs: 5000 }, got ${Array.isArray(options) ? 'an array' : typeof options}` });
  } else {
    timeoutMs = readOption(call, 'timeoutMs', () => (options as ShutdownOptions).timeoutMs);
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > MAX_TIMER_MS)) {
      issues.push({ path: 'timeoutMs', message: `must be a whole number of ms from 0 to ${MAX_TIMER_MS}, got ${typeof timeoutMs === 'string' ? JSON.stringify(timeoutMs) : String(timeoutMs)}` });
    }
    for (const key of readOption(call, '(options)', () => Object.keys(options))) {
      if (key === 'timeoutMs') continue;
      issues.push({ path: key, message: unknownKeyMessage(undefined, nearest(key, ['timeoutMs'])) });
    }
  }
  if (issues.length) throw validationError(`Invalid ${call} options`, issues, { phase: 'options' });
  return { timeoutMs: (timeoutMs as number | undefined) ?? defaultMs };
}

/** `read()`, or the ValidationError of `call`'s options naming `path` when reading throws (a getter, a Proxy). */
function readOption<T>(call: string, path: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    throw validationError(`Invalid ${call} options`, [{ path, message: `could not be read: ${thrownText(error)}` }], { phase: 'options' });
  }
}

/** The shutdown's timeout from its options, or the rejection options it cannot take get (shutdown() never throws). */
export function shutdownTimeout(options: unknown): number | Promise<never> {
  try {
    return checkTimeoutOptions(options, 'shutdown()', 10_000).timeoutMs;
  } catch (error) {
    return Promise.reject(error);
  }
}
