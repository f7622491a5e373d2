/**
 * The value sanitiser: turns anything a plugin hands over (a thrown value, log fields, an error's
 * own props) into plain data that JSON and structured clone accept, without ever throwing —
 * whatever getters, Proxies or cycles it meets.
 */
import { serializeErrorAt } from './error-wire.js';

/** Depth and width caps, the same on the way out and on the way back in. */
export const MAX_DEPTH = 8;
/** Where an error's `details.thrown.value` sits in its wire form: details, thrown, value. */
const THROWN_VALUE_DEPTH = 3;
export const MAX_KEYS = 100;
const MAX_STRING = 64 * 1024;
/**
 * Most values, and characters of strings, one walk writes (a walk: one `seen` set, from the value
 * a caller hands over). Depth and width alone do not bound it: `seen` holds the path only, so an
 * object met under many keys is written each time, and 100 keys each holding one object of 100
 * 60 KB strings (a few KB of the plugin's memory) wrote 600 MB, held the host's event loop for 4 s
 * (7 s in-process) and took it to 1.4 GB. What is past either is written '[Truncated]'.
 */
export const MAX_WALK_VALUES = 100_000;
const MAX_WALK_CHARS = 4 * 1024 * 1024;
const TRUNCATED = '[Truncated]';
/** What each walk has left to write, by its `seen` set (a walk a getter starts inside another has its own). */
const walkBudgets = new WeakMap<WeakSet<object>, { values: number; chars: number }>();

/** Take one value of `chars` characters from the walk's budget; false (nothing taken) once it would go past it. */
export function spendOnWalk(seen: WeakSet<object>, chars: number): boolean {
  let budget = walkBudgets.get(seen);
  if (!budget) walkBudgets.set(seen, (budget = { values: MAX_WALK_VALUES, chars: MAX_WALK_CHARS }));
  if (budget.values < 1 || budget.chars < chars) return false;
  budget.values--;
  budget.chars -= chars;
  return true;
}

/**
 * An Error by its tag, whatever its realm. A DOMException's tag is its own: one of Node's realm
 * (`signal.throwIfAborted()`, structuredClone's refusal) thrown by a handler run in a vm context of
 * its own (in-process, under Jest) is no instance of that context's Error, and was taken for a
 * non-Error object ("{}"), its name and message lost.
 */
function isErrorLike(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  try {
    const tag = Object.prototype.toString.call(value);
    return tag === '[object Error]' || tag === '[object DOMException]';
  } catch {
    return false;
  }
}

export function hasOwnSafe(target: object, key: string): boolean {
  try {
    return Object.hasOwn(target, key);
  } catch {
    return false;
  }
}

/** `instanceof` that answers false instead of throwing (a Proxy's getPrototypeOf trap may throw). */
export function isInstance(value: unknown, Ctor: abstract new (...args: never[]) => unknown): boolean {
  try {
    return value instanceof Ctor;
  } catch {
    return false;
  }
}

/** An Error of any realm: an instance of this one's, or by its tag (isErrorLike). */
export function isError(value: unknown): value is Error {
  return isInstance(value, Error) || isErrorLike(value);
}

export function readProp(target: object, key: string): unknown {
  try {
    return (target as Record<string, unknown>)[key];
  } catch (error) {
    return `[Getter threw: ${thrownMessage(error)}]`;
  }
}

/**
 * An error's `stack`, as readProp reads it. V8 writes a stack at its first read, from the error's
 * name and message: a getter of either that throws makes that read throw, and the frames were
 * lost. They are read again with each such field shadowed, for that one read, by what reading it
 * gives ("[Getter threw: …]"), which the stack's first line then says; the fields are put back.
 */
export function readStack(error: object): unknown {
  try {
    return (error as { stack?: unknown }).stack;
  } catch (thrown) {
    return stackWithHeaderShadowed(error) ?? `[Getter threw: ${thrownMessage(thrown)}]`;
  }
}

function stackWithHeaderShadowed(error: object): unknown {
  const restore: Array<() => unknown> = [];
  try {
    for (const key of ['name', 'message']) {
      if (!throwsOnRead(error, key)) continue;
      const own = Object.getOwnPropertyDescriptor(error, key);
      // Frozen, sealed, or a field the error holds fast: the stack stays unread.
      if (!Reflect.defineProperty(error, key, { value: readProp(error, key), configurable: true, writable: true, enumerable: false })) return undefined;
      restore.push(() => (own ? Reflect.defineProperty(error, key, own) : Reflect.deleteProperty(error, key)));
    }
    return restore.length > 0 ? (error as { stack?: unknown }).stack : undefined;
  } catch {
    // A Proxy whose traps throw, or a stack getter of the error's own that throws.
    return undefined;
  } finally {
    for (const undo of restore.reverse()) {
      try {
        undo();
      } catch {
        // As above: nothing more can be done with it.
      }
    }
  }
}

/** Whether reading `target[key]` throws (a getter, a Proxy trap). */
export function throwsOnRead(target: object, key: string): boolean {
  try {
    void (target as Record<string, unknown>)[key];
    return false;
  } catch {
    return true;
  }
}

/** The message of what a getter threw, never throwing itself (its own message may be a getter that throws). */
function thrownMessage(error: unknown): string {
  try {
    return error instanceof Error ? String(error.message) : 'unknown';
  } catch {
    return 'unknown';
  }
}

export function safeString(value: unknown): string {
  if (typeof value === 'string') return truncate(value);
  if (value === undefined || value === null) return '';
  try {
    return truncate(String(value));
  } catch {
    return '';
  }
}

/**
 * A string cut to MAX_STRING characters with what it says of the rest, the marker included: cut
 * once, it passes every later hop (a thread, then a queue worker, then the host) unchanged, and
 * the count stays that of the string the handler made.
 */
export function truncate(value: string): string {
  if (value.length <= MAX_STRING) return value;
  let keep = MAX_STRING - cutMarker(value.length).length;
  // Not between the two halves of a surrogate pair (an emoji): a lone half becomes U+FFFD in UTF-8.
  const last = value.charCodeAt(keep - 1);
  if (last >= 0xd800 && last <= 0xdbff) keep--;
  return `${value.slice(0, keep)}${cutMarker(value.length - keep)}`;
}

function cutMarker(leftOut: number): string {
  return `… [${leftOut} more chars]`;
}

export function defineData(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, configurable: true, writable: true, enumerable: true });
}

/**
 * What a caller's getter, Proxy trap or callback threw, for a message: its `message`, else the value
 * as a string, else what it is when no string can be made of it (a null-prototype object, a
 * revoked Proxy). Never throws.
 */
export function thrownText(error: unknown): string {
  try {
    return String((error as Error)?.message ?? error);
  } catch {
    return describeThrown(error, '').replace(/^ threw /, '');
  }
}

/** A short, human description of a thrown non-Error, for messages; `who` threw it. */
export function describeThrown(value: unknown, who = 'Handler'): string {
  if (value === undefined) return `${who} threw undefined`;
  if (value === null) return `${who} threw null`;
  switch (typeof value) {
    case 'string':
      return `${who} threw a string: ${truncate(value).slice(0, 500)}`;
    case 'number':
    case 'boolean':
    case 'bigint':
      return `${who} threw a ${typeof value}: ${String(value)}`;
    case 'symbol':
      return `${who} threw a symbol: ${value.toString()}`;
    case 'function':
      return `${who} threw a function${value.name ? `: ${value.name}` : ''}`;
    default: {
      let preview: string;
      try {
        preview = JSON.stringify(toWireValue(value, new WeakSet(), 0)).slice(0, 500);
      } catch {
        preview = '[unprintable]';
      }
      return `${who} threw a non-Error object: ${preview}`;
    }
  }
}

/** `{ type, value }` of a thrown non-Error, JSON-safe. */
export function describeValue(value: unknown): { type: string; value?: unknown } {
  let isArray = false;
  try {
    isArray = Array.isArray(value);
  } catch {
    // A revoked Proxy.
  }
  const type = value === null ? 'null' : isArray ? 'array' : typeof value;
  if (value === undefined) return { type };
  // Cut as deep as it is cut in an error's `details.thrown.value` on the wire (3 levels in), so
  // that it is the same on every backend: in-process keeps it where the others send it.
  return { type, value: toWireValue(value, new WeakSet(), THROWN_VALUE_DEPTH) };
}

/**
 * Whether `value` is plain data no bigger than what toWireValue writes in one walk, with room for
 * what it says of what it cut: visited as JSON writes it (an object listed twice counted twice, a
 * cycle until the count runs out), stopping once past. For what a runner says its runtime cut
 * already (a log line's fields), which plugin code may have written to the runner's channel itself.
 */
export function withinOneWalk(value: unknown): boolean {
  let values = 0;
  let chars = 0;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const item = pending.pop();
    if (++values > 2 * MAX_WALK_VALUES) return false;
    if (typeof item === 'string' && (item.length > MAX_STRING || (chars += item.length) > 2 * MAX_WALK_CHARS)) return false;
    if (typeof item !== 'object' || item === null) continue;
    // A plain object of any realm (a host under Jest reads a thread's messages as Node's): its prototype, if any, has none.
    const proto: unknown = Object.getPrototypeOf(item);
    if (!Array.isArray(item) && proto !== null && Object.getPrototypeOf(proto) !== null) return false;
    for (const key of Object.keys(item)) pending.push((item as Record<string, unknown>)[key]);
  }
  return true;
}

/**
 * Turn any value into something JSON and structured clone both accept: cycles become
 * '[Circular]', functions/symbols/bigints become strings, depth and width are capped, and so is
 * all one walk writes (MAX_WALK_VALUES, MAX_WALK_CHARS).
 */
export function toWireValue(value: unknown, seen: WeakSet<object> = new WeakSet(), depth = 0): unknown {
  if (typeof value === 'string') {
    const text = truncate(value);
    return spendOnWalk(seen, text.length) ? text : TRUNCATED;
  }
  if (!spendOnWalk(seen, 0)) return TRUNCATED;
  switch (typeof value) {
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'boolean':
      return value;
    case 'undefined':
      return undefined;
    case 'bigint':
      return `${value}n`;
    case 'symbol':
      return value.toString();
    case 'function':
      return `[Function${value.name ? ` ${value.name}` : ''}]`;
    default:
      break;
  }
  if (value === null) return null;
  const obj = value as object;
  if (seen.has(obj)) return '[Circular]';
  if (depth >= MAX_DEPTH) return TRUNCATED;
  if (isError(obj)) return serializeErrorAt(obj, seen, depth + 1);
  seen.add(obj);
  try {
    if (obj instanceof Date) return Number.isNaN(obj.getTime()) ? 'Invalid Date' : obj.toISOString();
    if (Array.isArray(obj)) {
      const arr = obj.slice(0, MAX_KEYS).map((item) => toWireValue(item, seen, depth + 1));
      if (obj.length > MAX_KEYS) arr.push(`[${obj.length - MAX_KEYS} more items]`);
      return arr;
    }
    const out: Record<string, unknown> = {};
    let keys: string[];
    try {
      keys = Object.keys(obj);
    } catch {
      return '[Unreadable object]';
    }
    for (const key of keys.slice(0, MAX_KEYS)) {
      defineData(out, key, toWireValue(readProp(obj, key), seen, depth + 1));
    }
    if (keys.length > MAX_KEYS) defineData(out, '…', `${keys.length - MAX_KEYS} more keys`);
    return out;
  } catch {
    // A hostile Proxy (throwing traps, revoked): describe it rather than fail the caller.
    return '[Unreadable object]';
  } finally {
    seen.delete(obj);
  }
}
