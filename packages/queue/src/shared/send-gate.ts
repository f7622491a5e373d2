import { monotonicNow, settlesWithin } from '@kb-labs/plugin-execution-core/backend-kit';
import { PartsWindow } from './parts-window.js';

/** The most the gate lets wait on a fast link, however fast it measures. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** How long it waits for the server's answer to a flush before it counts what went before as gone (a link cut meanwhile). */
const FLUSH_WAIT_MS = 5000;

/**
 * What one connection's bodies may have queued on it, not yet at the server, at once. Each body
 * that fits one message goes at once, unpaced; several at a time (eight results of 240 KB each
 * finishing together, ten tasks with 240 KB inputs) would queue megabytes on a slow link ahead of
 * the heartbeats that share the connection: at 256 KiB/s, longer than workerLostMs, and its side
 * would be taken for lost with their results on the way. A body of GATED_BYTES or more waits while
 * what the gate let through before it, not yet known to have reached the server (a flush: the
 * server's answer to a ping sent behind it), weighs more than the link carries in the time a large
 * body's parts may queue (PartsWindow.QUEUED_MS), as measured by those flushes (at least one part:
 * a body is never held back on its own).
 */
export class SendGate {
  static readonly GATED_BYTES = 16 * 1024;
  readonly #flush: () => Promise<void>;
  readonly #leastBytes: () => number;
  /** Bytes let through and not yet confirmed by a flush. */
  #unconfirmed = 0;
  #confirming: Promise<void> | undefined;
  #confirmedBytes = 0;
  #confirmingMs = 0;

  /** `flush`: resolves once the server has everything published before it; `leastBytes`: one part. */
  constructor(flush: () => Promise<void>, leastBytes: () => number) {
    this.#flush = flush;
    this.#leastBytes = leastBytes;
  }

  /** Whether a body of `bytes` waits its turn (admit) rather than going at once. */
  gates(bytes: number): boolean {
    return bytes >= SendGate.GATED_BYTES;
  }

  /** Resolves once a body of `bytes` may go; it counts as queued from then. */
  async admit(bytes: number): Promise<void> {
    while (this.#unconfirmed > 0 && this.#unconfirmed + bytes > this.#budget()) await this.#confirm();
    this.#unconfirmed += bytes;
  }

  #budget(): number {
    // Until a flush has measured the link, one part: a slow link's first burst is the one that hurts.
    const bytesPerMs = this.#confirmingMs > 0 ? this.#confirmedBytes / this.#confirmingMs : 0;
    return Math.max(this.#leastBytes(), Math.min(MAX_QUEUED_BYTES, bytesPerMs * PartsWindow.QUEUED_MS));
  }

  /** One flush at a time: what was queued when it began is confirmed when it is answered (or given up on). */
  #confirm(): Promise<void> {
    this.#confirming ??= (async () => {
      const bytes = this.#unconfirmed;
      const started = monotonicNow();
      const flushed = this.#flush().then(() => true, () => false);
      const answered = (await settlesWithin(flushed, FLUSH_WAIT_MS)) && (await flushed);
      this.#unconfirmed = Math.max(0, this.#unconfirmed - bytes);
      if (answered) {
        this.#confirmedBytes += bytes;
        this.#confirmingMs += Math.max(1, monotonicNow() - started);
      }
      this.#confirming = undefined;
    })();
    return this.#confirming;
  }
}
