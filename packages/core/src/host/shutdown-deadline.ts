import { clearTimeout, monotonicNow, setTimeout } from '../real-timers.js';
/**
 * When a shutdown stops waiting: its first call's `timeoutMs` from then, brought forward by a
 * later call with a shorter one (a host's second Ctrl-C, say), never pushed back.
 */
export class ShutdownDeadline {
  #at: number;
  readonly #waiters = new Set<() => void>();
  #timer: NodeJS.Timeout | undefined;

  constructor(timeoutMs: number) {
    this.#at = monotonicNow() + timeoutMs;
  }

  /** Bring the deadline forward to `timeoutMs` from now, if that is sooner. */
  tighten(timeoutMs: number): void {
    const at = monotonicNow() + timeoutMs;
    if (at >= this.#at) return;
    this.#at = at;
    if (this.#waiters.size > 0) this.#arm();
  }

  /** What is left of it, in whole ms. */
  remainingMs(): number {
    return Math.max(0, Math.ceil(this.#at - monotonicNow()));
  }

  /** Whether `promise` settles (either way) before the deadline; no timer is left either way. */
  within(promise: Promise<unknown>): Promise<boolean> {
    return new Promise((resolve) => {
      const passed = () => {
        this.#waiters.delete(passed);
        resolve(false);
      };
      this.#waiters.add(passed);
      this.#arm();
      const settled = () => {
        this.#waiters.delete(passed);
        if (this.#waiters.size === 0) clearTimeout(this.#timer);
        resolve(true);
      };
      promise.then(settled, settled);
    });
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      for (const passed of [...this.#waiters]) passed();
    }, Math.max(0, this.#at - monotonicNow()));
  }
}
