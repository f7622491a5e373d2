import { ValidationError } from './errors.js';
import { tightenViews } from './tight-views.js';
import { formatPath } from './validation.js';
// An Error of any realm (instanceof, else its tag): what structuredClone and node:v8 throw is of
// Node's realm, and a host whose code runs in a vm context of its own (a test file under Jest) has
// other Error classes, where instanceof Error found none and a refused function's source went out.
import { isError } from './wire-value.js';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
const { types } = process.getBuiltinModule('node:util');
// node:v8 only when a refused value is looked at: loading it loads Node's streams with it, ~5 ms of
// every host's start-up. Node's lookup is taken now, before any plugin code could replace it.
const getBuiltinModule = process.getBuiltinModule.bind(process);

/**
 * Structured-clone a value that is about to cross (or, in-process, would cross) a boundary.
 * Functions, symbols, class-bound handles … fail the same way on every backend: a
 * ValidationError naming what was being sent. Primitives skip the clone (the hot path).
 */
export function cloneForWire<T>(value: T, what: string): T {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol')) return value;
  if (typeof value === 'object') {
    let copy: unknown = UNSUITABLE;
    try {
      // Per call, not module state: a getter read during the copy may itself clone something.
      copy = fastCopy(value, 0, { budget: FAST_BUDGET, seen: [] });
    } catch {
      // A getter threw: let structuredClone meet it too, and report it the same way.
    }
    if (copy !== UNSUITABLE) return copy as T;
  }
  try {
    // structuredClone copies a view's whole buffer: only the view's own bytes go (tight-views.ts).
    return tightenViews(structuredClone(value));
  } catch (error) {
    throw unserializableError(what, error, value);
  }
}

/**
 * What a DataCloneError looks like when a value cannot go over the wire: a ValidationError naming
 * what was being sent and, given the value, where in it the refused thing is (`input.name`),
 * where structured clone's own message says only "() => 1 could not be cloned". A value nested
 * too deeply for the serialiser's stack is said so (`reason: 'too-deep'`), without a walk.
 */
export function unserializableError(what: string, error: unknown, value?: unknown): ValidationError {
  if (isRangeError(error) && /call stack/i.test(error.message)) {
    return new ValidationError(`${what} cannot be sent across the execution boundary: it is nested too deeply to be serialised (${error.message})`, {
      details: { what, reason: 'too-deep' },
      cause: error,
    });
  }
  // Over a size limit (a subprocess frame's: a RangeError with its bytes and limit): not its kind, its size.
  const { bytes, limit } = error as { bytes?: unknown; limit?: unknown };
  if (isRangeError(error) && typeof bytes === 'number' && typeof limit === 'number') {
    return new ValidationError(`${what} cannot be sent across the execution boundary: ${error.message}`, { details: { what, reason: 'too-large', bytes, limit }, cause: error });
  }
  // Where the refusal says (v8-wire.ts: what v8's serialiser would lose), or where a walk finds it.
  const said = (error as { refusedPath?: unknown } | undefined)?.refusedPath;
  const path = Array.isArray(said) ? (said as PropertyKey[]) : refusedAt(value, refusedKinds(error));
  const at = path ? formatPath(path, what.split(' ').pop()) : undefined;
  const cause = asDataCloneError(error);
  return new ValidationError(`${what} cannot be sent across the execution boundary: ${(cause as Error)?.message ?? String(cause)}${at ? ` (at ${at})` : ''}`, {
    details: { what, reason: 'not-serializable', ...(at ? { path: at } : {}) },
    cause,
  });
}

/**
 * A task's refusal by a wire that sends its input and context as one message (the subprocess and
 * queue backends): named as the one that holds what was refused, with where in it (`context.tenant.key`),
 * not always as the input; as the input when neither walk finds it.
 */
export function taskUnserializableError(error: unknown, task: { readonly input?: unknown; readonly context?: unknown }): ValidationError {
  const inInput = unserializableError('input', error, task.input);
  if (inInput.details?.path !== undefined) return inInput;
  const inContext = unserializableError('context', error, task.context);
  return inContext.details?.path !== undefined ? inContext : inInput;
}

/**
 * The clone's refusal as a DataCloneError on every backend (node:v8's serialiser, the subprocess
 * and queue wires, throws a plain Error where structured clone throws a DOMException), saying
 * what kind of value was refused rather than quoting it: the text of a function is its source,
 * and a host service's (its code, a secret written in it) must not reach the plugin that called it.
 */
function asDataCloneError(error: unknown): unknown {
  if (!isError(error) || (error.constructor !== Error && error.name !== 'DataCloneError' && !isNodeRealmError(error))) return error;
  const refused = /^([\s\S]*) could not be cloned\.$/.exec(error.message)?.[1];
  if (refused === undefined) return error;
  const kind = /^(?:#<|\[object )/.test(refused) ? refused : refused.startsWith('Symbol(') ? 'A symbol' : FUNCTION_TEXT.test(refused) ? 'A function' : 'A value';
  return new DOMException(`${kind} could not be cloned.`, 'DataCloneError');
}

/**
 * A RangeError of this realm, a subclass included (subprocess's FrameTooLargeError, whose name is
 * its own), or of another by its name (what node:v8 throws for a host under Jest).
 */
function isRangeError(error: unknown): error is RangeError {
  return error instanceof RangeError || (isError(error) && error.name === 'RangeError');
}

/** A plain Error (node:v8's refusal) made by another realm's Error, whose constructor is not this one's. */
function isNodeRealmError(error: unknown): boolean {
  return !(error instanceof Error) && types.isNativeError(error) && error.name === 'Error';
}

/** How a function's text starts (`function`, `async`, `class`, an arrow's, a method's `save() {`, a getter's): its source, never shown. */
const FUNCTION_TEXT = /^(?:async\b|function\b|class\b|\(|\*|\[|(?:get|set|static)\s|[\w$]+\s*(?:=>|\())/;

/** A step of a walk through a value (refusedAt's, v8-wire.ts's): the key it took, from the step before. */
export interface Step {
  readonly key: PropertyKey;
  readonly parent: Step | undefined;
}

/** How many values refusedAt looks at, at most: it runs on the host's thread, after a clone failed. */
const WALK_BUDGET = 10_000;

/**
 * The path to the first thing structured clone refuses in `value` (a function, a symbol, a
 * promise, a weak collection, a Proxy, a getter that throws; shared memory or a Blob where the
 * error names them), found within a bounded walk. A loop,
 * not recursion: a value nested thousands deep neither overflows the stack nor costs more than
 * its size.
 */
/**
 * What v8's serialiser (the subprocess and queue backends) refuses that structured clone within a
 * process takes, and its error names: shared memory, and Blobs ("host objects"). Looked for only
 * when the error names them, so that a function further on is not blamed on a shared buffer that
 * was fine.
 */
function refusedKinds(error: unknown): RefusedKinds {
  const message = String((error as Error)?.message ?? '');
  return { shared: /SharedArrayBuffer/.test(message), hostObjects: /host object/i.test(message), platformObjects: PLATFORM_OBJECT_REFUSAL.test(message) };
}

interface RefusedKinds {
  shared: boolean;
  hostObjects: boolean;
  /** What structured clone refuses whose message names nothing: a URL, Headers or Request (Node 22 and later), a MessagePort. */
  platformObjects: boolean;
}

const PLATFORM_OBJECT_REFUSAL = /unsupported type|needs transfer/i;

const objectTag = Object.prototype.toString;
/** An array's, a map's, a string's iterator, an iterator helper's (`.values().map(…)`), `Iterator.from`'s: refused, named only "#<Object>". */
const ITERATOR_TAG = /^\[object (?:[\w ]+ )?Iterator(?: Helper)?\]$/;
const isIterator = (value: object): boolean => ITERATOR_TAG.test(Reflect.apply(objectTag, value, []) as string);
const isWeakRef = (value: object): boolean => Reflect.apply(objectTag, value, []) === '[object WeakRef]';

function refusedAt(value: unknown, refuses: RefusedKinds): PropertyKey[] | undefined {
  if (refuses.hostObjects) {
    const found = descendTo(value, refusedAsHostObject);
    if (found) return found;
  }
  if (refuses.platformObjects) {
    const found = descendTo(value, refusedAsPlatformObject);
    if (found) return found;
  }
  const seen = new Set<object>();
  const pending: Array<{ value: unknown; at: Step | undefined }> = [{ value, at: undefined }];
  for (let budget = WALK_BUDGET; pending.length > 0 && budget > 0; budget--) {
    const { value: v, at } = pending.pop()!;
    if (typeof v === 'function' || typeof v === 'symbol') return pathOf(at);
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    seen.add(v);
    let children: Array<[PropertyKey, () => unknown]>;
    try {
      // By brand, not instanceof, here and in childrenOf: a value of another realm (see isError) is walked alike.
      if (types.isProxy(v) || types.isGeneratorObject(v) || isIterator(v) || types.isPromise(v) || types.isWeakMap(v) || types.isWeakSet(v) || isWeakRef(v)) return pathOf(at);
      // The buffer only: v8's serialiser copies a view's bytes, of shared memory too, and a view named here hid the buffer refused.
      if (refuses.shared && types.isSharedArrayBuffer(v)) return pathOf(at);
      if (refuses.hostObjects && typeof Blob === 'function' && v instanceof Blob) return pathOf(at);
      if (isDetached(v)) return pathOf(at);
      children = childrenOf(v, budget);
    } catch {
      return pathOf(at);
    }
    // Read now, in order (a getter that throws is named at its key); walked first to last.
    const read: Array<{ value: unknown; at: Step }> = [];
    for (const [key, get] of children) {
      const step = { key, parent: at };
      try {
        read.push({ value: get(), at: step });
      } catch {
        return pathOf(step);
      }
    }
    for (let i = read.length - 1; i >= 0; i--) pending.push(read[i]!);
  }
  return undefined;
}

/**
 * Where a serialiser meets an object it refuses with a message that names only the object (v8's:
 * a Blob, a KeyObject, a CryptoKey, a perf_hooks Histogram …; structured clone's: a URL, a
 * MessagePort …): down the one child at each level that `refused` on its own, to the value none
 * of whose children is (a histogram's own `constructor`, a function, is refused otherwise: not
 * followed). Only after a failure: each step serialises the child whole.
 */
function descendTo(value: unknown, refused: (value: unknown) => boolean): PropertyKey[] | undefined {
  let at: Step | undefined;
  let v = value;
  if (!refused(v)) return undefined;
  for (let budget = WALK_BUDGET; budget > 0 && v !== null && typeof v === 'object'; budget--) {
    let next: { key: PropertyKey; value: unknown } | undefined;
    for (const [key, get] of childrenOf(v, budget)) {
      let child: unknown;
      try {
        child = get();
      } catch {
        return pathOf({ key, parent: at });
      }
      if (refused(child)) {
        next = { key, value: child };
        break;
      }
    }
    if (!next) break;
    at = { key: next.key, parent: at };
    v = next.value;
  }
  return pathOf(at);
}

function refusedAsHostObject(value: unknown): boolean {
  try {
    getBuiltinModule('node:v8').serialize(value);
    return false;
  } catch (error) {
    return refusedKinds(error).hostObjects;
  }
}

function refusedAsPlatformObject(value: unknown): boolean {
  try {
    structuredClone(value);
    return false;
  } catch (error) {
    return refusedKinds(error).platformObjects;
  }
}

/** The keys from the value walked to `step`. */
export function pathOf(step: Step | undefined): PropertyKey[] {
  const path: PropertyKey[] = [];
  for (let at = step; at; at = at.parent) path.push(at.key);
  return path.reverse();
}

/** An ArrayBuffer (or a view of one) transferred away: clone refuses it. Empty ones only are tried (Node 20 has no `detached`). */
function isDetached(v: object): boolean {
  const buffer = types.isArrayBuffer(v) ? v : ArrayBuffer.isView(v) && types.isArrayBuffer(v.buffer) ? v.buffer : undefined;
  if (buffer === undefined || buffer.byteLength > 0) return false;
  try {
    structuredClone(buffer);
    return false;
  } catch {
    return true;
  }
}

/** Each child of `v` with a reader of its value: a getter that throws is found at its own key. */
function childrenOf(v: object, limit: number): Array<[PropertyKey, () => unknown]> {
  const children: Array<[PropertyKey, () => unknown]> = [];
  // Numbers only, and Object.keys would name each index of one of millions (seconds).
  if (ArrayBuffer.isView(v) || types.isAnyArrayBuffer(v)) return children;
  if (types.isSet(v)) {
    for (const item of v) {
      if (children.length >= limit) break;
      children.push([children.length, () => item]);
    }
    return children;
  }
  if (Array.isArray(v) || types.isMap(v)) {
    for (const [key, item] of v.entries()) {
      if (children.length >= limit) break;
      children.push([key as PropertyKey, () => item]);
    }
    return children;
  }
  const keys = Object.keys(v);
  // The clone reads these of an Error too, getters included, though they are not enumerable.
  if (types.isNativeError(v)) for (const key of ERROR_READS) if (!keys.includes(key)) keys.push(key);
  for (const key of keys) {
    if (children.length >= limit) break;
    children.push([key, () => (v as Record<string, unknown>)[key]]);
  }
  return children;
}

const ERROR_READS = ['name', 'message', 'stack'];

// structuredClone has a fixed cost (serialise + deserialise) that dominates for the small plain
// values most executions carry. For exactly those — plain objects and dense arrays of strings,
// numbers, booleans, null and undefined, small and shallow, each object reached once — a JS copy
// gives the same result; anything else (Dates, Maps, class instances, proxies, shared or cyclic
// references, holes, "__proto__" keys, big values) goes to structuredClone.
const UNSUITABLE = Symbol('unsuitable');
const FAST_BUDGET = 64;
const FAST_DEPTH = 4;
interface CopyState {
  /** Entries left before the value counts as big. */
  budget: number;
  /** Objects met in this copy: one met twice is shared (or a cycle), which structuredClone keeps shared. */
  seen: object[];
}

function fastCopy(value: object, depth: number, state: CopyState): unknown {
  // structuredClone refuses proxies; so must we.
  if (depth > FAST_DEPTH || types.isProxy(value) || state.seen.includes(value)) return UNSUITABLE;
  state.seen.push(value);
  if (Array.isArray(value)) {
    const length = value.length;
    if ((state.budget -= length + 1) < 0 || Object.keys(value).length !== length) return UNSUITABLE;
    const out = new Array<unknown>(length);
    for (let i = 0; i < length; i++) {
      const item = fastLeaf(value[i], depth, state);
      if (item === UNSUITABLE) return UNSUITABLE;
      out[i] = item;
    }
    return out;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return UNSUITABLE;
  const keys = Object.keys(value);
  if ((state.budget -= keys.length + 1) < 0) return UNSUITABLE;
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    if (key === '__proto__') return UNSUITABLE;
    const item = fastLeaf((value as Record<string, unknown>)[key], depth, state);
    if (item === UNSUITABLE) return UNSUITABLE;
    out[key] = item;
  }
  return out;
}

function fastLeaf(item: unknown, depth: number, state: CopyState): unknown {
  switch (typeof item) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
      return item;
    case 'object':
      return item === null ? null : fastCopy(item, depth + 1, state);
    default:
      return UNSUITABLE;
  }
}
