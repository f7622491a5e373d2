/**
 * Thread side: what a handler writes to process.stdout / process.stderr (console.log included)
 * goes to the host's `onLog` as lines of stream `stdout` / `stderr`, like on the subprocess
 * backend, instead of onto the host's own terminal. A thread's stdout is otherwise piped into
 * the host's, and piscina does not expose Worker's `stdout: true`, so the capture happens here.
 *
 * Delivery is capped per execution (the rest is dropped, with one notice) and writes never
 * apply backpressure: a handler spamming its output cannot flood the host.
 */
type Stream = 'stdout' | 'stderr';
type Write = (chunk: unknown, encoding?: unknown, callback?: unknown) => boolean;

export interface OutputLimits {
  /** Characters delivered per stream per execution. */
  maxOutputPerStream: number;
  /** Longest line delivered; longer ones are cut. */
  maxLogLineLength: number;
}

class StreamCapture {
  partial = '';
  delivered = 0;
  dropped = 0;
}

export class OutputTap {
  readonly #limits: OutputLimits;
  #sink: ((stream: Stream, lines: string[]) => void) | undefined;
  readonly #captures: Record<Stream, StreamCapture> = { stdout: new StreamCapture(), stderr: new StreamCapture() };

  constructor(limits: OutputLimits) {
    this.#limits = limits;
    for (const stream of ['stdout', 'stderr'] as const) {
      const target = process[stream] as unknown as { write: Write };
      const original = target.write;
      const tap = this;
      // Between executions output is nobody's: it goes where it always went (the host's stream).
      target.write = function write(this: unknown, chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
        if (!tap.#sink) return Reflect.apply(original, target, [chunk, encoding, callback]) as boolean;
        tap.#push(stream, typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) || chunk instanceof Uint8Array ? Buffer.from(chunk).toString(typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8') : String(chunk));
        const done = typeof encoding === 'function' ? encoding : callback;
        if (typeof done === 'function') queueMicrotask(() => (done as () => void)());
        return true;
      };
    }
  }

  /** Capture into `sink` until `end()`. */
  begin(sink: (stream: Stream, lines: string[]) => void): void {
    this.#sink = sink;
    for (const capture of Object.values(this.#captures)) {
      capture.partial = '';
      capture.delivered = 0;
      capture.dropped = 0;
    }
  }

  /** Deliver trailing partial lines and the truncation notices, then stop capturing. */
  end(): void {
    const sink = this.#sink;
    if (!sink) return;
    for (const stream of ['stdout', 'stderr'] as const) {
      const capture = this.#captures[stream];
      const tail: string[] = [];
      if (capture.partial) this.#deliver(capture, capture.partial, tail);
      capture.partial = '';
      if (capture.dropped > 0) {
        tail.push(`[output truncated: ${capture.dropped} characters not delivered past the ${this.#limits.maxOutputPerStream}-character cap]`);
      }
      if (tail.length) sink(stream, tail);
    }
    this.#sink = undefined;
  }

  #push(stream: Stream, text: string): void {
    const capture = this.#captures[stream];
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) break;
      const line = capture.partial + text.slice(start, nl);
      capture.partial = '';
      this.#deliver(capture, line.endsWith('\r') ? line.slice(0, -1) : line, lines);
      start = nl + 1;
    }
    capture.partial += text.slice(start);
    if (capture.partial.length > this.#limits.maxLogLineLength) {
      this.#deliver(capture, capture.partial, lines);
      capture.partial = '';
    }
    if (lines.length) this.#sink!(stream, lines);
  }

  #deliver(capture: StreamCapture, line: string, into: string[]): void {
    const { maxOutputPerStream, maxLogLineLength } = this.#limits;
    if (capture.delivered >= maxOutputPerStream) {
      capture.dropped += line.length;
      return;
    }
    const cut = line.length > maxLogLineLength ? `${line.slice(0, maxLogLineLength)}… [line cut at ${maxLogLineLength} characters]` : line;
    capture.delivered += cut.length;
    into.push(cut);
  }
}
