/**
 * Caps on what one stream (a runner's stdout or stderr) delivers to `onLog` in one execution,
 * named as the backend options that set them: `outputLimits.resolve(options)` is one.
 */
export interface StreamOutputLimits {
  /** Longest line delivered, in characters; a longer one is cut and marked. */
  maxLogLineLength: number;
  /** Characters one stream delivers per execution; what comes after is dropped, and said once. */
  maxOutputPerStream: number;
}

/** @deprecated The names the caps had before they took the options' own: give `maxLogLineLength` and `maxOutputPerStream` (`StreamOutputLimits`). */
export interface DeprecatedOutputLimits {
  /** @deprecated Use `maxLogLineLength`. */
  maxLineLength: number;
  /** @deprecated Use `maxOutputPerStream`. */
  maxChars: number;
}

/** What `OutputLines` takes: `StreamOutputLimits`, or the deprecated names it had before. */
export type OutputLimits = StreamOutputLimits | DeprecatedOutputLimits;

/**
 * Turns the text a runner writes to one stream into the lines `onLog` gets, with one rule on
 * every backend:
 * - a line ends at `\n` (a `\r` before it is dropped), or where the execution's output ends;
 * - a line longer than `maxLineLength` is delivered once, cut, ending with `… [N more characters]`
 *   (N what it really had beyond the cut, however many writes or reads it came in); only the
 *   first `maxLineLength` characters of a line are ever held;
 * - each line counts its full length plus its newline against `maxChars`; once that is spent,
 *   lines are dropped, and `finish()` delivers one `[output truncated: …]` notice;
 * - delivery never throws: a host callback that throws is its own problem.
 */
export class OutputLines {
  readonly #maxLineLength: number;
  readonly #maxChars: number;
  readonly #deliver: (lines: string[]) => void;
  /** The line so far, up to `maxLogLineLength` characters; `#beyond` counts the rest of it. */
  #partial = '';
  #beyond = 0;
  /** The line's last character so far is a `\r` (kept or counted). */
  #endsInCR = false;
  #delivered = 0;
  #dropped = 0;

  constructor(limits: OutputLimits, deliver: (lines: string[]) => void) {
    const named = 'maxLogLineLength' in limits;
    this.#maxLineLength = named ? limits.maxLogLineLength : limits.maxLineLength;
    this.#maxChars = named ? limits.maxOutputPerStream : limits.maxChars;
    this.#deliver = deliver;
  }

  /** Take a chunk of text; the lines it completes are delivered now, in one call. */
  push(text: string): void {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) break;
      this.#append(text, start, nl);
      this.#endLine(lines);
      start = nl + 1;
    }
    this.#append(text, start, text.length);
    this.#send(lines);
  }

  /** Deliver a trailing line without a newline and the truncation notice; then start afresh. */
  finish(): void {
    const lines: string[] = [];
    if (this.#partial || this.#beyond) this.#endLine(lines);
    if (this.#dropped > 0) lines.push(`[output truncated: ${this.#dropped} characters not delivered past the ${this.#maxChars}-character cap]`);
    this.#delivered = 0;
    this.#dropped = 0;
    this.#send(lines);
  }

  #append(text: string, from: number, to: number): void {
    const room = Math.max(0, this.#maxLineLength - this.#partial.length);
    const kept = Math.min(room, to - from);
    if (kept > 0) this.#partial += text.slice(from, from + kept);
    this.#beyond += to - from - kept;
    if (to > from) this.#endsInCR = text.charCodeAt(to - 1) === 13;
  }

  #endLine(into: string[]): void {
    let line = this.#partial;
    let beyond = this.#beyond;
    const cr = this.#endsInCR;
    this.#partial = '';
    this.#beyond = 0;
    this.#endsInCR = false;
    // The \r of a \r\n, wherever the cut left it.
    if (cr && beyond > 0) beyond -= 1;
    else if (cr) line = line.slice(0, -1);
    this.#take(line, beyond, into);
  }

  #take(line: string, beyond: number, into: string[]): void {
    const length = line.length + beyond;
    if (this.#delivered >= this.#maxChars) {
      this.#dropped += length + 1;
      return;
    }
    this.#delivered += length + 1;
    into.push(beyond > 0 ? `${line}… [${beyond} more characters]` : line);
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
