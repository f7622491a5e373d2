import { monotonicNow } from '@kb-labs/plugin-execution-core/backend-kit';
/** How long a caller that did not answer a `started` is first passed over; each silence after doubles it. */
const FIRST_PASS_OVER_MS = 2000;
const MAX_PASS_OVER_MS = 10_000;

/**
 * Callers (hosts) that did not answer a worker's `started` in time: frozen (SIGSTOP, a paused
 * VM), their event loop blocked, or their link cut without a reset, which the server may take
 * minutes to notice. Each of their tasks would hold one of this worker's slots for the whole wait
 * and go back to the stream to be taken again at once, over and over, while other hosts' tasks
 * wait behind them. For a while after such a silence their tasks are handed back unasked: the
 * first silence passes the caller over for 2 s, each one after for twice as long as the last (up
 * to 10 s: a caller that is back waits that long at most before a worker asks it again, while one
 * that stays silent costs a slot 3 s in 13); a caller that answers a `started` is heard at once.
 */
export class SilentCallers {
  readonly #passedOver = new Map<string, { until: number; forMs: number }>();

  /** Whether `caller`'s tasks are passed over now, and for how much longer (ms). */
  passOverFor(caller: string, now = monotonicNow()): number {
    const entry = this.#passedOver.get(caller);
    return entry === undefined ? 0 : Math.max(0, entry.until - now);
  }

  /** `caller` did not answer a `started` in time. */
  silent(caller: string, now = monotonicNow()): void {
    const last = this.#passedOver.get(caller)?.forMs;
    const forMs = last === undefined ? FIRST_PASS_OVER_MS : Math.min(MAX_PASS_OVER_MS, last * 2);
    this.#passedOver.set(caller, { until: now + forMs, forMs });
  }

  /** `caller` answered a `started` (or is gone: its tasks are ended on their next delivery). */
  answered(caller: string): void {
    this.#passedOver.delete(caller);
  }
}
