import path from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Where an error was thrown, from its stack: what the CLI says beside a module's failure to load
 * and beside a handler's own error, as Node does for an uncaught one.
 */

/** A stack frame's "file:line:column", as Node writes it: a path, or a file: URL (an ES module's). */
const FRAME = /^\s+at (?:.*\()?((?:file:\/\/)?\/[^\s()]+:\d+:\d+)\)?$/gm;

/**
 * The "file:line[:column]" an error's stack starts at: a CommonJS module's SyntaxError begins with
 * it; else the first frame in a file (not Node's own, `node:internal/…`); given `within` (folders),
 * the first in one of them (a plugin's own code, not the library's that wrapped what it threw).
 * Undefined when the stack names none (an ES module's SyntaxError: Node prints none either).
 */
export function thrownAt(stack: unknown, within?: readonly string[]): string | undefined {
  if (typeof stack !== 'string') return undefined;
  const first = /^((?:file:\/\/)?\/\S*:\d+)\n/.exec(stack)?.[1];
  const frames = [...(first ? [first] : []), ...Array.from(stack.matchAll(FRAME), (match) => match[1]!)];
  if (!within) return frames[0];
  const prefixes = within.flatMap((folder) => [`${folder}${path.sep}`, `${pathToFileURL(folder).href}/`]);
  return frames.find((frame) => prefixes.some((prefix) => frame.startsWith(prefix)));
}

/** Why a module failed to load, with where when its stack says. */
export function loadFailure(error: unknown): string {
  const e = error as { name?: unknown; message?: unknown; stack?: unknown } | null;
  let said: string;
  let stack: unknown;
  try {
    said = e && typeof e.message === 'string' ? `${typeof e.name === 'string' ? e.name : 'Error'}: ${e.message}` : String(error);
    stack = e?.stack;
  } catch {
    // What no string can be made of (a null-prototype object, a revoked Proxy, a getter that throws).
    return `${typeof e === 'function' ? 'a function' : 'an object'} that cannot be shown`;
  }
  const where = thrownAt(stack);
  return where ? `${said} (at ${where})` : said;
}
