import { monotonicNow } from '@kb-labs/plugin-execution-core/backend-kit';
/** How long a caller that did not answer a `started` is first passed over; each silence after doubles it. */
const FIRST_PASS_OVER_MS = 2000;
const MAX_PASS_OVER_MS = 10_000;
/** A task handed back while its caller is asked waits this much past the ask's own time limit: by then the ask is settled. */
const ASK_SETTLES_MS = 500;
/**
 * A caller none of whose tasks came this long after its pass-over (and ask) ended is forgotten: its
 * tasks come back as the pass-over ends, so one still in the stream asks well within it.
 */
const FORGOTTEN_AFTER_MS = MAX_PASS_OVER_MS;
/** How often, at most, a new silence lets go of callers forgotten so. */
const SWEEP_EVERY_MS = 1000;

/**
 * Callers (hosts) that did not answer a worker's `started` in time: frozen (SIGSTOP, a paused
 * VM), their event loop blocked, or their link cut without a reset, which the server may take
 * minutes to notice. Each of their tasks would hold one of this worker's slots for the whole wait
 * and go back to the stream to be taken again at once, over and over, while other hosts' tasks
 * wait behind them. For a while after such a silence their tasks are handed back unasked: the
 * first silence passes the caller over for 2 s, each one after for twice as long as the last (up
 * to 10 s). Each task handed back waits in the stream until the pass-over ends (JetStream gives
 * a task whose wait is over before any newer one: tasks that came round every second would keep
 * other hosts' tasks behind them for the whole pass-over). When it ends, one task asks the caller
 * again; the others that come meanwhile wait until that ask is settled. A caller that is back
 * waits 10 s at most before a worker asks it again, and then for that ask; one that stays silent
 * costs one slot of the worker a `started` time limit in every pass-over; a caller that answers a
 * `started` is heard at once.
 */
export class SilentCallers {
  readonly #passedOver = new Map<string, { until: number; forMs: number; askedUntil?: number }>();
  #sweptAt = Number.NEGATIVE_INFINITY;

  /**
   * How long a task of `caller` delivered now is to wait in the stream before it comes again: 0 if
   * it may ask its caller. While `caller` is passed over, until the pass-over ends; after that,
   * while one of its tasks asks it, until that ask is settled.
   */
  handBackFor(caller: string, now = monotonicNow()): number {
    const entry = this.#passedOver.get(caller);
    if (entry === undefined) return 0;
    if (entry.until > now) return entry.until - now;
    return entry.askedUntil !== undefined && entry.askedUntil > now ? entry.askedUntil - now : 0;
  }

  /** A task of `caller` asks it now, for at most `forMs`: if `caller` was passed over, its other tasks wait for the answer. */
  asking(caller: string, forMs: number, now = monotonicNow()): void {
    const entry = this.#passedOver.get(caller);
    if (entry) entry.askedUntil = now + forMs + ASK_SETTLES_MS;
  }

  /** `caller` did not answer a `started` in time. */
  silent(caller: string, now = monotonicNow()): void {
    const last = this.#passedOver.get(caller)?.forMs;
    const forMs = last === undefined ? FIRST_PASS_OVER_MS : Math.min(MAX_PASS_OVER_MS, last * 2);
    this.#passedOver.set(caller, { until: now + forMs, forMs });
    // Callers no task asks any more (a peer's forged ones, each named by one task it then removed;
    // a host whose tasks another worker found gone) are let go of: kept, one per caller for ever.
    if (now - this.#sweptAt < SWEEP_EVERY_MS) return;
    this.#sweptAt = now;
    for (const [each, entry] of this.#passedOver) if (now - Math.max(entry.until, entry.askedUntil ?? 0) > FORGOTTEN_AFTER_MS) this.#passedOver.delete(each);
  }

  /** How many callers it knows of now (passed over, or whose pass-over has not been forgotten yet). */
  get known(): number {
    return this.#passedOver.size;
  }

  /** `caller` answered a `started` (or is gone: its tasks are ended on their next delivery). */
  answered(caller: string): void {
    this.#passedOver.delete(caller);
  }
}
