import type { Readable } from 'node:stream';

export interface OutputCaptureOptions {
  /** Longest line delivered (characters); longer ones are cut with a marker. */
  maxLineLength: number;
  /** Characters of one stream delivered per execution; the rest is drained and dropped, with one notice. */
  maxChars: number;
  /** How much of the end of the stream to keep for crash reports. */
  tailChars: number;
  onLine: (line: string) => void;
}

/**
 * Reads a child's stdout or stderr line by line. The stream is always drained, even past the
 * cap, so a child spamming its output never blocks on a full pipe; only delivery is capped.
 * The last `tailChars` are kept apart from the cap, so a crash report shows how the child died
 * even after it flooded the stream.
 */
export class OutputCapture {
  readonly #options: OutputCaptureOptions;
  #partial = '';
  #delivered = 0;
  #dropped = 0;
  #tail = '';
  #active = true;

  constructor(stream: Readable, options: OutputCaptureOptions) {
    this.#options = options;
    stream.setEncoding('utf8');
    stream.on('data', (text: string) => this.#push(text));
    stream.on('error', () => {});
  }

  /** The end of everything the stream carried (capped at `tailChars`). */
  tail(): string {
    return this.#partial ? (this.#tail + this.#partial).slice(-this.#options.tailChars) : this.#tail;
  }

  /** Deliver a trailing line without a newline, then stop delivering. */
  finish(): void {
    if (!this.#active) return;
    if (this.#partial) this.#emit(this.#partial);
    this.#partial = '';
    if (this.#dropped > 0 && this.#active) {
      this.#safeDeliver(`[output truncated: ${this.#dropped} characters not delivered past the ${this.#options.maxChars}-character cap]`);
    }
    this.#active = false;
  }

  #push(text: string): void {
    const { tailChars, maxLineLength } = this.#options;
    this.#tail = (this.#tail + text).slice(-tailChars);
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) break;
      const line = this.#partial + text.slice(start, nl);
      this.#partial = '';
      this.#emit(line.endsWith('\r') ? line.slice(0, -1) : line);
      start = nl + 1;
    }
    this.#partial += text.slice(start);
    // A line with no newline in sight must not grow without bound.
    if (this.#partial.length > maxLineLength) {
      this.#emit(this.#partial);
      this.#partial = '';
    }
  }

  #emit(line: string): void {
    if (!this.#active) return;
    const { maxChars, maxLineLength } = this.#options;
    if (this.#delivered >= maxChars) {
      this.#dropped += line.length + 1;
      return;
    }
    const shown = line.length > maxLineLength ? `${line.slice(0, maxLineLength)}… [${line.length - maxLineLength} more characters]` : line;
    this.#delivered += line.length + 1;
    this.#safeDeliver(shown);
  }

  #safeDeliver(line: string): void {
    try {
      this.#options.onLine(line);
    } catch {
      // The host's callback is not our problem to crash on.
    }
  }
}
