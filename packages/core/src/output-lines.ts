/** Caps on what one stream (a runner's stdout or stderr) delivers to `onLog` in one execution. */
export interface OutputLimits {
  /** Longest line delivered, in characters; a longer one is cut and marked. */
  maxLineLength: number;
  /** Characters one stream delivers per execution; what comes after is dropped, and said once. */
  maxChars: number;
}

/**
 * Turns the text a runner writes to one stream into the lines `onLog` gets, with one rule on
 * every backend:
 * - a line ends at `\n` (a `\r` before it is dropped); a line with no newline in sight is
 *   delivered once it reaches `maxLineLength`, so it cannot grow without bound;
 * - a line longer than `maxLineLength` is cut and ends with `… [N more characters]`;
 * - each line counts its full length plus its newline against `maxChars`; once that is spent,
 *   lines are dropped, and `finish()` delivers one `[output truncated: …]` notice;
 * - delivery never throws: a host callback that throws is its own problem.
 */
export class OutputLines {
  readonly #limits: OutputLimits;
  readonly #deliver: (lines: string[]) => void;
  #partial = '';
  #delivered = 0;
  #dropped = 0;

  constructor(limits: OutputLimits, deliver: (lines: string[]) => void) {
    this.#limits = limits;
    this.#deliver = deliver;
  }

  /** Take a chunk of text; complete lines are delivered now, in one call. */
  push(text: string): void {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) break;
      const line = this.#partial + text.slice(start, nl);
      this.#partial = '';
      this.#take(line.endsWith('\r') ? line.slice(0, -1) : line, lines);
      start = nl + 1;
    }
    this.#partial += text.slice(start);
    if (this.#partial.length >= this.#limits.maxLineLength) {
      this.#take(this.#partial, lines);
      this.#partial = '';
    }
    this.#send(lines);
  }

  /** Deliver a trailing line without a newline and the truncation notice; then start afresh. */
  finish(): void {
    const lines: string[] = [];
    if (this.#partial) this.#take(this.#partial, lines);
    if (this.#dropped > 0) lines.push(`[output truncated: ${this.#dropped} characters not delivered past the ${this.#limits.maxChars}-character cap]`);
    this.#partial = '';
    this.#delivered = 0;
    this.#dropped = 0;
    this.#send(lines);
  }

  #take(line: string, into: string[]): void {
    const { maxChars, maxLineLength } = this.#limits;
    if (this.#delivered >= maxChars) {
      this.#dropped += line.length + 1;
      return;
    }
    this.#delivered += line.length + 1;
    into.push(line.length > maxLineLength ? `${line.slice(0, maxLineLength)}… [${line.length - maxLineLength} more characters]` : line);
  }

  #send(lines: string[]): void {
    if (lines.length === 0) return;
    try {
      this.#deliver(lines);
    } catch {
      // The host's callback is not ours to crash on.
    }
  }
}
