import { writeSync } from 'node:fs';
import type { Socket } from 'node:net';
import v8 from 'node:v8';
import { deserializeLikeClone } from '@kb-labs/plugin-execution-core/runner';

/**
 * Framed messages over a byte stream, shared by the host and the child. An 8-byte header —
 * the magic bytes `KB`, the frame format version, a check byte over the length, a 4-byte
 * big-endian payload length — then a payload made by `v8.serialize`. The magic, version and
 * check let the receiver reject garbage (a plugin writing to the protocol pipe itself) the moment
 * its first 8 bytes arrive, instead of waiting for a payload whose "length" was never meant as one.
 *
 * Why v8 serialisation rather than JSON: it has structured-clone semantics (Dates, Maps, Sets,
 * BigInt, typed arrays, cycles), the same set of values the worker-pool backend carries with
 * postMessage, so a handler sees the same input and the host the same result on every backend.
 * Values it cannot carry (functions, symbols) fail at the sender with a clear error.
 * The receiving side treats every payload as untrusted: the length is checked before anything
 * is buffered, and a payload that does not deserialise is a protocol error, never an exception
 * that escapes into the event loop.
 */

/**
 * Largest frame accepted unless configured: 256 MiB, so a handler can return what it could on
 * the other backends (the hostile matrix returns a 100 MB string; 200 MB as a two-byte one).
 * The limit bounds what a child can make the host buffer for one message; memory is only
 * taken as bytes actually arrive, never on the strength of a length header.
 */
export const DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024;
const HEADER_BYTES = 8;
/** A frame this large or larger is joined as it arrives (FrameDecoder). */
const GATHER_FROM_BYTES = 1024 * 1024;
const MAGIC_0 = 0x4b; // 'K'
const MAGIC_1 = 0x42; // 'B'
/** Version of the frame format (not of the messages inside, see PROTOCOL_VERSION in core). */
export const FRAME_VERSION = 1;
/** The length field is unsigned 32-bit; keep one bit of margin so no sum overflows. */
const ABSOLUTE_MAX_FRAME_BYTES = 0x7fff_ffff;

/** The peer broke the framing: oversized or undecodable frame. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
  /** The messages of the same chunk whose frames came whole before the break (FrameDecoder.push). */
  decoded: unknown[] = [];
}

/** The first byte of what v8's serializer writes (its version header). */
const V8_HEADER_TAG = 0xff;

/**
 * A whole, well-formed frame whose value cannot be rebuilt on this side: nested deeper than its
 * stack allows (v8 writes deeper than it reads), or holding what v8 writes but cannot read (an
 * Error that is its own cause, a Float16Array from a newer Node). The stream goes on; what the
 * message was is lost.
 */
export class UnreadableFrame {
  constructor(readonly error: Error) {}
}

/** A value too large to send as one frame. */
export class FrameTooLargeError extends RangeError {
  override name = 'FrameTooLargeError';
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`message of ${bytes} bytes exceeds the frame limit of ${limit} bytes`);
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4));
// Taken when this module loads, before plugin code can replace it (the writes would spin instead).
const wait = Atomics.wait;

/**
 * Write all of `frame` to the non-blocking descriptor `fd` now. While the peer's side is full
 * (EAGAIN) the thread sleeps in short, growing pauses (50 µs to 2 ms), never spinning.
 */
function writeWhole(fd: number, frame: Buffer): void {
  let written = 0;
  let pauseMs = 0.05;
  while (written < frame.length) {
    try {
      written += writeSync(fd, frame, written);
      pauseMs = 0.05;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      wait(pause, 0, 0, pauseMs);
      pauseMs = Math.min(pauseMs * 2, 2);
    }
  }
}

/** Serialise one message to a frame (header + payload). Throws when the value cannot be cloned or is too large. */
export function encodeFrame(message: unknown, maxFrameBytes: number): Buffer {
  const payload = v8.serialize(message);
  if (payload.length > maxFrameBytes) {
    throw new FrameTooLargeError(payload.length, maxFrameBytes);
  }
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header[0] = MAGIC_0;
  header[1] = MAGIC_1;
  header[2] = FRAME_VERSION;
  header.writeUInt32BE(payload.length, 4);
  header[3] = checkByte(header);
  return Buffer.concat([header, payload], HEADER_BYTES + payload.length);
}

/** One byte over the magic, version and length: a header made of random bytes passes with p = 2^-32. */
function checkByte(header: Buffer): number {
  return (header[0]! ^ header[1]! ^ header[2]! ^ header[4]! ^ header[5]! ^ header[6]! ^ header[7]! ^ 0xa5) & 0xff;
}

/** Why these 8 bytes are not a frame header, or undefined when they are one. */
function headerProblem(header: Buffer): string | undefined {
  if (header[0] !== MAGIC_0 || header[1] !== MAGIC_1) return `not a frame header (bytes ${header.subarray(0, 4).toString('hex')}…)`;
  if (header[2] !== FRAME_VERSION) return `frame format version ${header[2]}, expected ${FRAME_VERSION}`;
  if (header[3] !== checkByte(header)) return 'frame header check byte does not match';
  return undefined;
}

/**
 * Incremental frame parser. Chunks are kept in a list and joined only once a whole frame is
 * there, so a 10 MB frame arriving in 64 KB pieces costs one copy, not thousands. A large frame
 * is joined as it arrives instead, once a quarter of it has (GATHER_FROM_BYTES, below): copying
 * 100 MB at its last chunk held the reader's event loop for ~0.4 s here (the fresh pages' faults),
 * on top of the decoding, long enough under load for a queue worker to miss its heartbeats.
 */
export class FrameDecoder {
  readonly #max: number;
  #chunks: Buffer[] = [];
  /** Bytes arrived and not yet taken: in `#chunks`, and in `#gathered` for a large frame. */
  #buffered = 0;
  #need = -1;
  /** The large frame being joined as it arrives: its payload buffer and how much of it is filled. */
  #gathered: { payload: Buffer; filled: number } | undefined;
  #failed = false;

  constructor(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    this.#max = Math.min(Math.max(1, Math.floor(maxFrameBytes)), ABSOLUTE_MAX_FRAME_BYTES);
  }

  /** Feed bytes; returns the messages completed by them. Throws ProtocolError on a broken stream (and stays broken), with the messages before the break. */
  push(chunk: Buffer): unknown[] {
    if (this.#failed) throw new ProtocolError('stream already failed');
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const out: unknown[] = [];
    try {
      this.#decodeInto(out);
    } catch (error) {
      if (error instanceof ProtocolError) error.decoded = out;
      throw error;
    }
    return out;
  }

  #decodeInto(out: unknown[]): void {
    for (;;) {
      if (this.#need < 0) {
        if (this.#buffered < HEADER_BYTES) break;
        const header = this.#take(HEADER_BYTES);
        const problem = headerProblem(header);
        if (problem) this.#fail(problem);
        const length = header.readUInt32BE(4);
        if (length > this.#max) this.#fail(`frame of ${length} bytes exceeds the limit of ${this.#max} bytes`);
        if (length === 0) this.#fail('empty frame');
        this.#need = length;
      }
      if (this.#buffered < this.#need) {
        this.#gather();
        break;
      }
      const payload = this.#take(this.#need);
      this.#need = -1;
      let message: unknown;
      try {
        message = deserializeLikeClone(payload);
      } catch (error) {
        // Written by v8 (its header's first byte) in a whole frame: the value, not the stream, is
        // what cannot be read, as a worker thread's unreadable message is (VALIDATION_ERROR, not a
        // crash). Bytes no serializer wrote are the stream broken.
        if (payload[0] === V8_HEADER_TAG) message = new UnreadableFrame(error instanceof Error ? error : new Error(String(error)));
        else this.#fail(`undecodable frame: ${(error as Error)?.message ?? String(error)}`);
      }
      out.push(message);
    }
  }

  #fail(reason: string): never {
    this.#failed = true;
    this.#chunks = [];
    this.#buffered = 0;
    this.#gathered = undefined;
    throw new ProtocolError(reason);
  }

  /**
   * Join what arrived of a large frame into its payload buffer, once a quarter of it is here: the
   * buffer is taken on the strength of bytes that arrived (at most four times them), not of a
   * length header alone. Everything buffered belongs to this frame (it is not whole yet).
   */
  #gather(): void {
    if (this.#need < GATHER_FROM_BYTES || (!this.#gathered && this.#buffered * 4 < this.#need)) return;
    const gathered = (this.#gathered ??= { payload: Buffer.allocUnsafe(this.#need), filled: 0 });
    for (const chunk of this.#chunks) gathered.filled += chunk.copy(gathered.payload, gathered.filled);
    this.#chunks = [];
  }

  #take(n: number): Buffer {
    const first = this.#chunks[0];
    let out: Buffer;
    if (!this.#gathered && first && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
    } else {
      out = this.#gathered?.payload ?? Buffer.allocUnsafe(n);
      let offset = this.#gathered?.filled ?? 0;
      this.#gathered = undefined;
      while (offset < n) {
        const chunk = this.#chunks[0]!;
        const used = Math.min(chunk.length, n - offset);
        chunk.copy(out, offset, 0, used);
        offset += used;
        if (used === chunk.length) this.#chunks.shift();
        else this.#chunks[0] = chunk.subarray(used);
      }
    }
    this.#buffered -= n;
    return out;
  }
}

/**
 * One framed, bidirectional channel over a socket (the extra pipe on fd 3).
 *
 * The host's writes are queued in order and never block its event loop: it keeps reading while
 * its own large writes drain, so two 10 MB messages crossing each other cannot deadlock. What a
 * child does not read piles up in that queue, so it is bounded: past `maxQueuedBytes` the child
 * counts as broken (one that asks for large platform results and stops reading them cannot make
 * the host buffer without end).
 *
 * The child's writes (`writeFd`) are synchronous, as its stdout and stderr are: a handler that
 * logs or emits in a tight loop waits while the host is behind, instead of queueing without end
 * in its own memory. The host always reads, so the child's wait always ends.
 */
export class FramedChannel {
  readonly #socket: Socket;
  readonly #maxFrameBytes: number;
  readonly #decoder: FrameDecoder;
  readonly #writeFd: number | undefined;
  readonly #onClose: () => void;
  readonly #maxQueuedBytes: number;
  readonly #onProtocolError: (error: ProtocolError) => void;
  #closed = false;

  constructor(
    socket: Socket,
    options: {
      maxFrameBytes: number;
      /** @default 2 × maxFrameBytes */
      maxQueuedBytes?: number;
      /** Write each frame at once to this descriptor (the socket's own), waiting while it is full. */
      writeFd?: number;
      onMessage: (message: unknown) => void;
      onProtocolError: (error: ProtocolError) => void;
      onClose: () => void;
    },
  ) {
    this.#socket = socket;
    this.#maxFrameBytes = options.maxFrameBytes;
    this.#maxQueuedBytes = options.maxQueuedBytes ?? 2 * options.maxFrameBytes;
    this.#writeFd = options.writeFd;
    this.#onClose = options.onClose;
    this.#onProtocolError = options.onProtocolError;
    this.#decoder = new FrameDecoder(options.maxFrameBytes);
    socket.on('data', (chunk: Buffer) => {
      if (this.#closed) return;
      let messages: unknown[];
      let broken: ProtocolError | undefined;
      try {
        messages = this.#decoder.push(chunk);
      } catch (error) {
        broken = error instanceof ProtocolError ? error : new ProtocolError(String(error));
        messages = broken.decoded;
      }
      // The frames that came whole before a break are delivered first: a result among them is the answer.
      for (const message of messages) {
        if (this.#closed) return;
        options.onMessage(message);
      }
      if (broken && !this.#closed) {
        this.#closed = true;
        options.onProtocolError(broken);
      }
    });
    // A peer that vanishes mid-write gives EPIPE/ECONNRESET; the process exit path reports it.
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#closed = true;
      this.#onClose();
    });
  }

  /** Encode and queue one message. Throws synchronously when it cannot be serialised or is too large. */
  send(message: unknown): void {
    this.sendFrame(encodeFrame(message, this.#maxFrameBytes));
  }

  /** Queue a frame made earlier by `encodeFrame` (the host encodes a task before it spends a spawn on it). */
  sendFrame(frame: Buffer): void {
    if (this.#closed || this.#socket.destroyed) return;
    if (this.#writeFd !== undefined) {
      try {
        writeWhole(this.#writeFd, frame);
      } catch {
        // The peer is gone (EPIPE, ECONNRESET).
        this.#closed = true;
        this.#onClose();
      }
      return;
    }
    this.#socket.write(frame);
    if (this.#socket.writableLength > this.#maxQueuedBytes) {
      this.#closed = true;
      this.#onProtocolError(new ProtocolError(`the peer stopped reading: ${this.#socket.writableLength} bytes queued for it`));
    }
  }

  /** Stop reading and drop the socket. */
  destroy(): void {
    this.#closed = true;
    this.#socket.destroy();
  }
}
