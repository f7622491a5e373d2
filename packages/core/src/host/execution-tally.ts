import type { ErrorCode } from '../errors.js';
import type { BackendStats, ExecutionResult } from '../types.js';
import { LatencyRecorder } from './latency-recorder.js';

/**
 * A backend's count of its executions: how many are between execute() and their result (and a
 * way to wait until none is), how each ended, and the latencies of those a runner was given.
 */
export class ExecutionTally {
  #inflight = 0;
  #onIdle: (() => void) | undefined;
  readonly #byOutcome: Partial<Record<'ok' | ErrorCode, number>> = {};
  #total = 0;
  readonly #latency = { total: new LatencyRecorder(), wait: new LatencyRecorder(), run: new LatencyRecorder() };

  get inflight(): number {
    return this.#inflight;
  }

  /** An execute() has begun. */
  begun(): void {
    this.#inflight++;
  }

  /** An execution has its result; `dispatched`: a runner was given it (its latencies count). */
  finished(result: ExecutionResult, dispatched: boolean): void {
    if (--this.#inflight === 0 && this.#onIdle) {
      const idle = this.#onIdle;
      this.#onIdle = undefined;
      idle();
    }
    const code = result.ok ? 'ok' : result.error.code;
    this.#byOutcome[code] = (this.#byOutcome[code] ?? 0) + 1;
    this.#total++;
    if (!dispatched || neverRan(result)) return;
    this.#latency.total.record(result.meta.durationMs);
    this.#latency.wait.record(result.meta.queueWaitMs);
    this.#latency.run.record(result.meta.runMs);
  }

  /** Settles once no execution is between execute() and its result. */
  idle(): Promise<void> {
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const previous = this.#onIdle;
      this.#onIdle = () => {
        previous?.();
        resolve();
      };
    });
  }

  /** The figures of `stats()` this keeps. */
  figures(): Pick<BackendStats, 'total' | 'byOutcome' | 'latency'> {
    const latency = this.#latency;
    return {
      total: this.#total,
      byOutcome: { ok: 0, ...this.#byOutcome },
      latency: { total: latency.total.summary(), wait: latency.wait.summary(), run: latency.run.summary() },
    };
  }
}

/**
 * Refused by what it was handed to, before any runner began it: a queue backend's stream full
 * (QUEUE_FULL), or an error that says it never started (`details.phase: 'queued'`: a time limit
 * or a lost connection while its task waited for a worker). Its times are no runner's.
 */
function neverRan(result: ExecutionResult): boolean {
  if (result.ok) return false;
  return result.error.code === 'QUEUE_FULL' || (result.error.details as { phase?: unknown } | undefined)?.phase === 'queued';
}
