import { LiveList, LiveMap, type LiveEntry } from './live-list.js';
import { clearTimeout, monotonicNow, setTimeout } from '../real-timers.js';

/**
 * The time limits of running executions, on one timer per distinct limit instead of a timer per
 * execution. Executions with the same limit expire in the order they started, so each limit keeps
 * an insertion-ordered list whose first entry is the next to expire; its timer is armed for that
 * entry and re-armed, when it fires, for the next one. Starting and ending an execution are then a
 * list insert and unlink, where a timer of its own costs an allocation, a timer-list insert and an
 * unenroll (docs/benchmarks.md, in-process overhead). A list, not a Set: live-list.ts.
 *
 * While a limit has executions its timer keeps the process alive, as a timer of their own would;
 * once it has none, its timer no longer does, and it is kept for the next execution of that limit
 * only among the few limits used last: a host that gives each execution the time left of its own
 * budget (a limit of its own each) would otherwise hold a timer per execution for the whole limit.
 */
/** Node's longest timer (about 24.8 days): the longest time limit any option, manifest or execute() takes. */
export const MAX_TIMER_MS = 2_147_483_647;

interface Expiry {
  /** `monotonicNow()` at which it expires. */
  readonly at: number;
  readonly expire: () => void;
}

/** One execution's time limit, as `add` gives it and `cancel` takes it. */
export type Deadline = LiveEntry<Expiry>;

interface LimitTimers {
  /** Its key in `#byLimit`: the limit's ms as a string. */
  readonly key: string;
  readonly pending: LiveList<Expiry>;
  timer: NodeJS.Timeout | undefined;
  /** Its place among the idle limits, while it has nothing pending. */
  idle: LiveEntry<LimitTimers> | undefined;
}

/** Limits without executions whose timers are kept for their next execution, the last ones used. */
const IDLE_LIMITS_KEPT = 8;

export class Deadlines {
  /** By limit (its ms as a string): a LiveMap, since a host may give each execution a limit of its own. */
  readonly #byLimit = new LiveMap<LimitTimers>();
  /** Of `#byLimit`, those with nothing pending, the longest idle first. */
  readonly #idle = new LiveList<LimitTimers>();

  /** Call `expire` once `limitMs` have passed since `now` (`monotonicNow()`), unless `cancel` is called with what this returns first. */
  add(limitMs: number, now: number, expire: () => void): Deadline {
    const key = String(limitMs);
    let limit = this.#byLimit.get(key);
    if (!limit) this.#byLimit.set(key, (limit = { key, pending: new LiveList(), timer: undefined, idle: undefined }));
    const wasEmpty = limit.pending.size === 0;
    const deadline = limit.pending.add({ at: now + limitMs, expire });
    // An armed timer fires no later than this deadline: it was armed for one that started earlier.
    if (wasEmpty) this.#notIdle(limit);
    if (!limit.timer) limit.timer = setTimeout(() => this.#fire(limit), limitMs);
    else if (wasEmpty) limit.timer.ref();
    return deadline;
  }

  cancel(limitMs: number, deadline: Deadline): void {
    const limit = this.#byLimit.get(String(limitMs));
    if (!limit?.pending.remove(deadline) || limit.pending.size > 0) return;
    limit.timer?.unref();
    limit.idle = this.#idle.add(limit);
    if (this.#idle.size <= IDLE_LIMITS_KEPT) return;
    const oldest = this.#idle.first!.value;
    this.#notIdle(oldest);
    clearTimeout(oldest.timer);
    this.#byLimit.delete(oldest.key);
  }

  #fire(limit: LimitTimers): void {
    limit.timer = undefined;
    const now = monotonicNow();
    for (let first = limit.pending.first; first && first.value.at <= now; first = limit.pending.first) {
      limit.pending.remove(first);
      try {
        first.value.expire();
      } catch {
        // One expiry that throws must not keep the others from expiring.
      }
    }
    // An expiry may have started another execution (and armed a timer for it): arm for the first.
    clearTimeout(limit.timer);
    const first = limit.pending.first;
    if (first) limit.timer = setTimeout(() => this.#fire(limit), Math.max(1, Math.ceil(first.value.at - monotonicNow())));
    else if (this.#byLimit.get(limit.key) === limit) {
      this.#byLimit.delete(limit.key);
      this.#notIdle(limit);
    }
  }

  #notIdle(limit: LimitTimers): void {
    if (limit.idle) this.#idle.remove(limit.idle);
    limit.idle = undefined;
  }
}
