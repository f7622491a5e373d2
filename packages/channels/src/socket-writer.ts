import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';

const CORK_FLUSH_BYTES = 64 * 1024;
/** How soon a paced send looks at the backlog again, at first; each look without a change waits twice as long, up to the most. */
const DRAIN_POLL_MS = 5;
const MAX_DRAIN_POLL_MS = 200;
/**
 * What each frame waiting in a socket's buffer counts for besides its bytes: about what Node and
 * ws hold for it there (a write request and a Buffer for its header, another for its data: ~215
 * bytes on Node 20). Counted in bytes only, a backlog of 4 MiB of empty messages (30 bytes on the
 * wire each) held some 140 000 frames and ~48 MB of the host's heap before the cut.
 */
const FRAME_OVERHEAD_BYTES = 256;

/** A send waiting for the backlog to drain (SocketWriter.drained). */
interface DrainWaiter {
  resolve(drained: boolean): void;
  ended: AbortSignal | undefined;
}

/** The sends of one execution waiting on this socket, and the one listener its `ended` signal has for them all. */
interface EndedWatch {
  waiters: Set<DrainWaiter>;
  onEnded(): void;
}

/**
 * Writes the server's frames to one socket: batches the frames of one event-loop turn, and cuts
 * off a client that does not read instead of letting its backlog grow without bound.
 */
export class SocketWriter {
  readonly #ws: WebSocket;
  readonly #maxBufferedBytes: number;
  readonly #onBackpressure: () => void;
  #corkedSocket: Duplex | undefined;
  #idleFrame = 0;
  readonly #waiters = new Set<DrainWaiter>();
  /**
   * The waiting sends by the `ended` signal they were given: one listener per execution, not one
   * per send. Node's EventTarget walks all of a signal's listeners to add or remove one, so 250 000
   * sends a handler fired without awaiting held the host's event loop for seconds at a time.
   */
  readonly #byEnded = new Map<AbortSignal, EndedWatch>();
  #pollMs = DRAIN_POLL_MS;
  #pollTimer: NodeJS.Timeout | undefined;
  #drainSocket: Duplex | undefined;
  /** Frames sent, frames ws has said written (in the order sent), and the frames sent when the buffer was last seen empty. */
  #framesSent = 0;
  #framesWritten = 0;
  #framesSentAtIdle = 0;

  /** `onBackpressure` must end the connection; the frame that would pass the limit is not sent. */
  constructor(ws: WebSocket, maxBufferedBytes: number, onBackpressure: () => void) {
    this.#ws = ws;
    this.#maxBufferedBytes = maxBufferedBytes;
    this.#onBackpressure = onBackpressure;
  }

  /** False when the socket is not open or the frame would pass the buffer limit. A Buffer is a text frame's UTF-8 bytes, sent as they are. */
  send(text: string | Buffer): boolean {
    const ws = this.#ws;
    if (ws.readyState !== ws.OPEN) return false;
    if (this.#wouldOverflow(text)) {
      this.#onBackpressure();
      return false;
    }
    this.#cork();
    // One callback for every frame (Node calls a run of writes' one callback without a tick each).
    if (typeof text === 'string') ws.send(text, this.#frameWritten);
    else ws.send(text, { binary: false }, this.#frameWritten);
    this.#framesSent++;
    if (this.#corkedSocket && ws.bufferedAmount >= CORK_FLUSH_BYTES) this.#uncork();
    return true;
  }

  /**
   * Resolves true once the socket's backlog is at most half the cap (at once if it is), false if
   * the socket closes first or `ended` aborts (the execution that waits is over): what a handler's
   * `await ctx.channel.send()` waits for, so that one streaming to a slower client is paced
   * instead of cut off at the cap. Every send waiting on this socket shares one look at the
   * backlog: at the socket's `drain` or close, and on a timer that backs off from DRAIN_POLL_MS to
   * MAX_DRAIN_POLL_MS, so that a client that stopped reading costs a few looks a second.
   */
  drained(ended?: AbortSignal): Promise<boolean> {
    const at = this.#drainedNow(ended);
    if (at !== undefined) return Promise.resolve(at);
    return new Promise((resolve) => {
      const waiter: DrainWaiter = { resolve, ended };
      if (ended) this.#watchEnded(ended).waiters.add(waiter);
      this.#waiters.add(waiter);
      if (this.#waiters.size === 1) this.#watchBacklog();
    });
  }

  /** Where the sends waiting on `ended` are kept, with its one listener, which says false to them all. */
  #watchEnded(ended: AbortSignal): EndedWatch {
    let watch = this.#byEnded.get(ended);
    if (!watch) {
      const waiters = new Set<DrainWaiter>();
      watch = { waiters, onEnded: () => waiters.forEach((waiter) => this.#settle(waiter, false)) };
      ended.addEventListener('abort', watch.onEnded, { once: true });
      this.#byEnded.set(ended, watch);
    }
    return watch;
  }

  /** false: closed, or the wait is over; true: at most half the cap waits; undefined: not yet. */
  #drainedNow(ended: AbortSignal | undefined): boolean | undefined {
    const ws = this.#ws;
    return ws.readyState !== ws.OPEN || ended?.aborted ? false : this.#backlog() <= this.#maxBufferedBytes / 2 ? true : undefined;
  }

  /**
   * What waits for the client, as the cap counts it: the bytes not yet handed to the kernel, and
   * FRAME_OVERHEAD_BYTES for each frame among them. Those are the frames ws has not said written
   * since the buffer was last empty: it says so in the order they were sent, a tick after the
   * kernel took them, so frames sent before the buffer emptied do not count though not said yet.
   */
  #backlog(): number {
    const bytes = this.#ws.bufferedAmount;
    if (bytes === 0) {
      this.#framesSentAtIdle = this.#framesSent;
      return 0;
    }
    return bytes + FRAME_OVERHEAD_BYTES * (this.#framesSent - Math.max(this.#framesWritten, this.#framesSentAtIdle));
  }

  readonly #frameWritten = (): void => {
    this.#framesWritten++;
  };

  #settle(waiter: DrainWaiter, drained: boolean): void {
    if (!this.#waiters.delete(waiter)) return;
    const { ended } = waiter;
    const watch = ended ? this.#byEnded.get(ended) : undefined;
    if (ended && watch?.waiters.delete(waiter) && watch.waiters.size === 0) {
      ended.removeEventListener('abort', watch.onEnded);
      this.#byEnded.delete(ended);
    }
    waiter.resolve(drained);
    if (this.#waiters.size === 0) this.#stopWatching();
  }

  #watchBacklog(): void {
    this.#pollMs = DRAIN_POLL_MS;
    this.#drainSocket = (this.#ws as unknown as { _socket?: Duplex | null })._socket ?? undefined;
    this.#drainSocket?.on('drain', this.#look);
    // Closed meanwhile: said false at once, not at the next look.
    this.#ws.on('close', this.#look);
    this.#pollTimer = setTimeout(this.#look, this.#pollMs);
  }

  #stopWatching(): void {
    clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
    this.#drainSocket?.off('drain', this.#look);
    this.#drainSocket = undefined;
    this.#ws.off('close', this.#look);
  }

  readonly #look = (): void => {
    for (const waiter of this.#waiters) {
      const drained = this.#drainedNow(waiter.ended);
      if (drained !== undefined) this.#settle(waiter, drained);
    }
    if (this.#waiters.size === 0) return;
    clearTimeout(this.#pollTimer);
    this.#pollMs = Math.min(this.#pollMs * 2, MAX_DRAIN_POLL_MS);
    this.#pollTimer = setTimeout(this.#look, this.#pollMs);
  };

  /**
   * One frame may always go out on an idle socket; beyond that, the backlog is capped. A frame
   * larger than the cap that went out on an idle socket is not backlog: while it is still in the
   * buffer (past the cap), up to the cap more may follow it, so that a client reading it is not
   * cut off, and the frame lost, by the next small frame (`#idleFrame`: what it counts for).
   */
  #wouldOverflow(text: string | Buffer): boolean {
    let buffered = this.#backlog();
    const bytes = Buffer.byteLength(text) + FRAME_OVERHEAD_BYTES;
    if (buffered > 0 && buffered + bytes > this.#limit(buffered) && this.#corkedSocket) {
      // Part of that may only be our own cork (frames sent earlier in this turn): flush it to the kernel and look again.
      this.#uncork();
      buffered = this.#backlog();
    }
    if (buffered === 0) {
      this.#idleFrame = bytes;
      return false;
    }
    return buffered + bytes > this.#limit(buffered);
  }

  /** The cap, plus the frame that went out on an idle socket while it is still in the buffer past the cap. */
  #limit(buffered: number): number {
    if (buffered <= this.#maxBufferedBytes) this.#idleFrame = 0;
    return this.#maxBufferedBytes + this.#idleFrame;
  }

  /**
   * Frames sent in one turn of the event loop (the replies of a pipelined batch, a broadcast) leave
   * in one writev instead of one syscall each; uncorked on the next tick or once 64 KiB are waiting.
   * ws has no public handle on its socket, hence `_socket` (stable across ws 7 and 8).
   */
  #cork(): void {
    if (this.#corkedSocket) return;
    const socket = (this.#ws as unknown as { _socket?: Duplex | null })._socket;
    if (!socket || typeof socket.cork !== 'function') return;
    socket.cork();
    this.#corkedSocket = socket;
    process.nextTick(this.#uncork);
  }

  readonly #uncork = (): void => {
    const socket = this.#corkedSocket;
    if (!socket) return;
    this.#corkedSocket = undefined;
    socket.uncork();
  };
}
