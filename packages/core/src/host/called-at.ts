import { monotonicNow } from '../real-timers.js';
/** When an `execute()` was called: `Date.now()` and `monotonicNow()` then. */
export interface CalledAt {
  startedAt: number;
  t0: number;
}

/**
 * A backend's `execute()` for a call made earlier (a lazy backend's, which loaded the backend
 * package first): `meta.startedAt`, `durationMs` and the span count from the call. A registered
 * symbol: a lazy backend of one copy of core reaches a backend of another.
 */
export const EXECUTE_CALLED_AT = Symbol.for('@kb-labs/plugin-execution.executeCalledAt');
