import type { Readable } from 'node:stream';
import { OutputLines, type StreamOutputLimits } from '@kb-labs/plugin-execution-core/backend-kit';

export interface OutputCaptureOptions extends StreamOutputLimits {
  /** How much of the end of the stream to keep for crash reports. */
  tailChars: number;
  onLine: (line: string) => void;
}

/**
 * Reads a child's stdout or stderr into `onLog` lines (core's OutputLines: the same caps and cut
 * marker as on every backend). The stream is always drained, even past the cap, so a child
 * spamming its output never blocks on a full pipe; only delivery is capped. The last `tailChars`
 * are kept apart from the cap, so a crash report shows how the child died even after it flooded
 * the stream.
 */
export class OutputCapture {
  readonly #tailChars: number;
  readonly #lines: OutputLines;
  #tail = '';
  #active = true;

  constructor(stream: Readable, options: OutputCaptureOptions) {
    this.#tailChars = options.tailChars;
    this.#lines = new OutputLines(options, (lines) => {
      for (const line of lines) options.onLine(line);
    });
    stream.setEncoding('utf8');
    stream.on('data', (text: string) => this.#push(text));
    stream.on('error', () => {});
  }

  /** The end of everything the stream carried (capped at `tailChars`). */
  tail(): string {
    return this.#tail;
  }

  /** Deliver a trailing line without a newline and the truncation notice, then stop delivering. */
  finish(): void {
    if (!this.#active) return;
    this.#active = false;
    this.#lines.finish();
  }

  #push(text: string): void {
    this.#tail = (this.#tail + text).slice(-this.#tailChars);
    if (this.#active) this.#lines.push(text);
  }
}
