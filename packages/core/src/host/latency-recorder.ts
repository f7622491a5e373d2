import type { LatencySummary } from '../types.js';

/** Keeps the last `capacity` samples in a ring; percentiles are computed on demand (stats are rare, samples are hot). */
export class LatencyRecorder {
  readonly #samples: Float64Array;
  #count = 0;
  #next = 0;

  constructor(capacity = 2048) {
    this.#samples = new Float64Array(capacity);
  }

  record(ms: number): void {
    this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % this.#samples.length;
    if (this.#count < this.#samples.length) this.#count++;
  }

  summary(): LatencySummary {
    if (this.#count === 0) return { count: 0, p50: 0, p95: 0, p99: 0, max: 0 };
    const sorted = this.#samples.slice(0, this.#count).sort();
    const at = (q: number) => roundMs(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!);
    return { count: this.#count, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: roundMs(sorted[sorted.length - 1]!) };
  }
}

/** `ms` to the microsecond, as results and stats give times. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
