/**
 * Thread side: what a handler writes to process.stdout / process.stderr (console.log included)
 * reaches the host's `onLog` as lines of stream `stdout` / `stderr`, cut and capped by core's
 * OutputLines as on every backend, instead of landing on the host's terminal. Captured here, not
 * from Worker's `stdout: true` streams on the host, so that the lines travel on the thread's
 * channel in order with the execution's other messages, before its answer. Writes never apply
 * backpressure: a handler spamming its output cannot flood the host.
 */
import { OutputLines, type OutputLimits } from '@kb-labs/plugin-execution-core/runner';

type Stream = 'stdout' | 'stderr';
type Write = (chunk: unknown, encoding?: unknown, callback?: unknown) => boolean;

export class OutputTap {
  #sink: ((stream: Stream, lines: string[]) => void) | undefined;
  readonly #lines: Record<Stream, OutputLines>;

  constructor(limits: OutputLimits) {
    const to = (stream: Stream) => (lines: string[]) => this.#sink?.(stream, lines);
    this.#lines = { stdout: new OutputLines(limits, to('stdout')), stderr: new OutputLines(limits, to('stderr')) };
    for (const stream of ['stdout', 'stderr'] as const) {
      const target = process[stream] as unknown as { write: Write };
      const tap = this;
      target.write = function write(this: unknown, chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
        // Between executions output is nobody's, and goes nowhere: on the host's own stdout it
        // would be taken for the host's (a CLI printing its result there, say).
        if (tap.#sink) tap.#lines[stream].push(typeof chunk === 'string' ? chunk : text(chunk, encoding));
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
    this.#lines.stdout.finish();
    this.#lines.stderr.finish();
    this.#sink = undefined;
  }
}

function text(chunk: unknown, encoding: unknown): string {
  if (chunk instanceof Uint8Array) return Buffer.from(chunk).toString(typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  return String(chunk);
}
