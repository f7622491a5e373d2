import { monotonicNow } from '@kb-labs/plugin-execution-core/backend-kit';

/** How often a host reads the pool's stream (checkStream): a stream deleted or made again by a worker is noticed within this. */
const STREAM_CHECK_MS = 5000;

/**
 * A host's reads of the pool's stream: one at a time on a connection, joined by a check while it
 * is under way. A read the connection's drop took waits out its timeout: a check after the drop
 * reads afresh rather than join it, and that read's timeout says nothing of the stream (`sameLink()`
 * is false once the connection it went on dropped).
 */
export class StreamReads {
  #current: { read: Promise<void>; drops: number } | undefined;
  #lastAt = monotonicNow();

  /** `drops()`: how many times the connection has dropped so far (Reconnection.drops). */
  constructor(private readonly drops: () => number) {}

  /** Whether the last read began STREAM_CHECK_MS or more before `now`. */
  due(now: number): boolean {
    return now - this.#lastAt >= STREAM_CHECK_MS;
  }

  /** `read(sameLink)`, unless a read on this connection is under way (that one's promise then). */
  run(read: (sameLink: () => boolean) => Promise<void>): Promise<void> {
    this.#lastAt = monotonicNow();
    const drops = this.drops();
    if (this.#current?.drops === drops) return this.#current.read;
    const current = {
      drops,
      read: read(() => this.drops() === drops).finally(() => {
        if (this.#current === current) this.#current = undefined;
      }),
    };
    this.#current = current;
    return current.read;
  }
}
