import { monotonicNow } from '@kb-labs/plugin-execution-core/backend-kit';
/**
 * How many parts of a large body may wait for their answers at once. One at a time, a body
 * crosses at one part per round trip whatever the link's bandwidth: 20 MB over a link of 100 ms
 * each way took over 30 s. More at once, a slow link would queue them ahead of the heartbeats
 * that share the connection, and its side would be taken for lost.
 *
 * So the window follows what the link has carried: after the first answer, as many parts as the
 * rate achieved so far moves in QUEUED_MS (at least one, at most MAX_PARTS). On a link of
 * 256 KiB/s that is one part of 256 KiB, as before; on a fast link with a long round trip it
 * opens up to MAX_PARTS within a few answers.
 */
export class PartsWindow {
  /** At most this much of a link's time is queued ahead of a heartbeat by one transfer. */
  static readonly QUEUED_MS = 500;
  static readonly MAX_PARTS = 8;
  readonly #partBytes: number;
  #startedAt: number | undefined;
  #answeredBytes = 0;

  constructor(partBytes: number) {
    this.#partBytes = partBytes;
  }

  /** Whether another part may go while `waiting` parts wait for their answers. */
  allows(waiting: number): boolean {
    if (waiting === 0) return true;
    if (this.#startedAt === undefined || this.#answeredBytes === 0) return false;
    const elapsedMs = Math.max(1, monotonicNow() - this.#startedAt);
    const bytesPerMs = this.#answeredBytes / elapsedMs;
    const parts = Math.floor((bytesPerMs * PartsWindow.QUEUED_MS) / this.#partBytes);
    return waiting < Math.min(PartsWindow.MAX_PARTS, Math.max(1, parts));
  }

  sent(): void {
    this.#startedAt ??= monotonicNow();
  }

  answered(bytes: number): void {
    this.#answeredBytes += bytes;
  }
}
