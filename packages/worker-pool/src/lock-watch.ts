/**
 * Thread side: Web Locks (`navigator.locks`, `worker_threads.locks`; Node 24.5 and later) a
 * handler holds or waits for after its answer. Node's lock manager is the whole process's: a lock
 * left held keeps the host and every other thread waiting on its name for as long as the thread
 * lives, and a request left waiting holds up every later request for that name behind it (it is
 * granted only in a turn of its own thread's loop, which sleeps between executions), then runs
 * its callback during whatever execution comes next. Neither keeps the loop alive, so HandleWatch
 * does not see them; the locks of a thread that ends are released and its requests dropped.
 */
import workerThreads from 'node:worker_threads';

const apply = Reflect.apply;

interface LockManagerLike {
  request: (...args: unknown[]) => unknown;
  query: () => Promise<{ held: readonly unknown[]; pending: readonly unknown[] }>;
}

/**
 * Wraps the lock manager's `request` (its prototype's: `navigator.locks` is the same object)
 * before any plugin code runs, only to know that plugin code used it: whether anything is left is
 * asked of the manager itself (`query()` lists the locks this thread holds and the requests it has
 * waiting, whoever made them, and only this thread's), so that a request given up through its
 * signal but still waiting in the manager's queue counts, and an `ifAvailable` one that got no
 * lock does not. Nothing to do where Node has no Web Locks.
 */
export class LockWatch {
  readonly #manager: LockManagerLike | undefined;
  readonly #query: LockManagerLike['query'] | undefined;
  /** Plugin code asked for a lock since the last look that found none left. */
  #touched = false;
  /** Its `request` could not be wrapped. */
  #unwatched = false;

  constructor() {
    const manager = (workerThreads as unknown as { locks?: LockManagerLike }).locks;
    if (manager === null || typeof manager !== 'object') return;
    const proto = Object.getPrototypeOf(manager) as LockManagerLike;
    const { request, query } = proto;
    if (typeof request !== 'function' || typeof query !== 'function') return;
    this.#manager = manager;
    this.#query = query;
    const watch = this;
    // A method keeps the name `request` that code looking at it expects.
    const wrapper = {
      request(this: unknown, ...args: unknown[]): unknown {
        watch.#touched = true;
        return apply(request, this, args);
      },
    }.request;
    // A prototype frozen (no Node freezes it today) cannot be watched: the manager is asked after every execution.
    if (!Reflect.set(proto, 'request', wrapper)) this.#unwatched = true;
  }

  /** Whether a lock may be left: plugin code asked for one since the last look (at this, without waiting: another handler's task). */
  touched(): boolean {
    return this.#touched;
  }

  /**
   * Whether this thread holds a lock or has a request waiting, undefined (nothing to wait for)
   * when plugin code asked for none since the last look that found none. A manager that cannot
   * answer (its prototype changed by plugin code) counts as one left.
   */
  left(): Promise<boolean> | undefined {
    if (!this.#touched && !this.#unwatched) return undefined;
    // Cleared first: what plugin code asks for once the manager has answered (a few awaits on) is looked at next time.
    this.#touched = false;
    return this.#anyLeft();
  }

  async #anyLeft(): Promise<boolean> {
    let left = true;
    try {
      const { held, pending } = await apply(this.#query!, this.#manager, []);
      left = held.length > 0 || pending.length > 0;
    } catch {
      // Its prototype changed by plugin code: whatever the thread holds, it cannot say.
    }
    if (left) this.#touched = true;
    return left;
  }
}
