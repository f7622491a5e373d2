/**
 * Thread side: what a handler writes to process.stdout / process.stderr (console.log included)
 * reaches the host's `onLog` as lines of stream `stdout` / `stderr`, cut and capped by core's
 * OutputLines as on every backend, instead of landing on the host's terminal. Captured here, not
 * from Worker's `stdout: true` streams on the host, so that the lines travel on the thread's
 * channel in order with the execution's other messages, before its answer. Writes never apply
 * backpressure: a handler spamming its output cannot flood the host. What is written is taken as
 * the bytes a pipe would carry and read back as UTF-8, as the subprocess backend reads a child's
 * pipes: a character cut between two Buffer writes (a stream piped to stdout) arrives whole, and
 * what is not UTF-8 (a lone surrogate, a cut character left at the end) as U+FFFD.
 */
import { StringDecoder } from 'node:string_decoder';
import { OutputLines, type StreamOutputLimits } from '@kb-labs/plugin-execution-core/runner';

type Stream = 'stdout' | 'stderr';
type Write = (chunk: unknown, encoding?: unknown, callback?: unknown) => boolean;

export class OutputTap {
  #sink: ((stream: Stream, lines: string[]) => void) | undefined;
  readonly #lines: Record<Stream, OutputLines>;
  readonly #decoders: Record<Stream, StringDecoder> = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };

  constructor(limits: StreamOutputLimits) {
    const to = (stream: Stream) => (lines: string[]) => this.#sink?.(stream, lines);
    this.#lines = { stdout: new OutputLines(limits, to('stdout')), stderr: new OutputLines(limits, to('stderr')) };
    for (const stream of ['stdout', 'stderr'] as const) {
      const target = process[stream] as unknown as { write: Write };
      const tap = this;
      target.write = function write(this: unknown, chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
        // Between executions output is nobody's, and goes nowhere: on the host's own stdout it
        // would be taken for the host's (a CLI printing its result there, say).
        if (tap.#sink) tap.#lines[stream].push(tap.#decoders[stream].write(bytes(chunk, encoding)));
        const done = typeof encoding === 'function' ? encoding : callback;
        if (typeof done === 'function') queueMicrotask(() => (done as () => void)());
        return true;
      };
    }
  }

  /** Capture into `sink` until `end()`. */
  begin(sink: (stream: Stream, lines: string[]) => void): void {
    this.#sink = sink;
  }

  /** Deliver trailing partial lines and the truncation notices, then stop capturing. */
  end(): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      const cut = this.#decoders[stream].end();
      if (cut) this.#lines[stream].push(cut);
      this.#lines[stream].finish();
    }
    this.#sink = undefined;
  }
}

/** The bytes a write puts on a stream: a string in its encoding (UTF-8 unless one is named), a Uint8Array as it is. */
function bytes(chunk: unknown, encoding: unknown): Buffer {
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const named = typeof encoding === 'string' && Buffer.isEncoding(encoding) ? encoding : 'utf8';
  return Buffer.from(String(chunk), named);
}
