/**
 * What a thread may send the host before the host has read it. A handler that logs or emits in a
 * tight loop posts faster than the host's event loop reads; unpaced, the messages would pile up
 * in the host's memory (2 million 1 KB log lines took the host to 2.2 GB). Paced, the handler's
 * own thread blocks once WINDOW units are unread, and goes on as the host reads: nothing is
 * dropped, and the host's memory stays bounded whatever the plugin does.
 *
 * The count lives in the SharedArrayBuffer the thread sends with its hello (ThreadHello.wake):
 * [0] wakes an idle thread (the host bumps it per task), [1] counts the units the host has read,
 * [2] is 1 while the thread waits for the host to read, [5] is 1 while the host holds it (its
 * output's receiver is behind), [6] counts the units the thread has sent, [7] is the execution it
 * answered last, [8] counts its looks for a task, [9] is 1 while it loads a handler's modules, [10] names an execution stopped during its load, [11] is the execution whose verdict it sent last (after a `pending` answer), [12] is the execution it began last. The counts wrap as int32s. Plugin code can reach the thread's channel but not
 * this buffer: what [6], [7], [11] and [12] say is the runtime's word, against which the host checks what
 * arrives on the channel (a message nobody counted, a result nobody answered, is forged).
 */

/** Units in flight at most: about 16 MB (8 million characters of text), or 4096 small messages. */
const WINDOW = 4096;
/**
 * Bytes per unit: a message counts one unit per 4 KB of its text (a character counted as two
 * bytes, as a string outside Latin-1 is sent), bytes and values, and one at least.
 */
const UNIT_BYTES = 4096;
/** What one value (an object, an array, a number …) of a message weighs, in bytes, besides its text. */
const NODE_BYTES = 16;
/** A message with more values than this is not weighed further: it takes the whole window. */
const WEIGH_NODES = 100_000;
/** How long one wait lasts before the thread looks again (the host wakes it sooner). */
const WAIT_SLICE_MS = 50;

export const FLOW_SLOTS = 13;
/** The most units one message of the runtime can weigh (a string of V8's longest length): more is forged. */
export const MAX_MESSAGE_UNITS = 1 << 20;
/** The slot where the thread counts the tasks it has taken (ThreadHello.wake). */
export const TAKEN = 3;
/** The slot the thread sets to 1 while it waits for a task in Atomics.wait, and back to 0 when it wakes. */
export const WAITING_FOR_TASK = 4;
/**
 * The slot the thread bumps each time it looks for a task on its task port, before it reads one
 * (reading a task deserialises it: seconds, for an input of millions of values). A thread that
 * has not taken its task but has looked since it was posted is reading it, not kept busy by what
 * the previous handler left running.
 */
export const LOOKED_FOR_TASK = 8;
/** The slot the thread sets to 1 while it loads a handler's modules (notified when it clears it): the host holds back ending it meanwhile. */
export const LOADING = 9;
/** How long a stop waits for a thread to finish loading a handler's modules before it ends it all the same (a module's top-level code may never end). */
export const LOAD_WAIT_MS = 2000;
/** Atomics.waitAsync (Node 16+; in TypeScript's lib from ES2024), taken at load as the others below. */
export const waitAsync = (Atomics as unknown as { waitAsync(array: Int32Array, index: number, value: number, timeoutMs: number): { async: false } | { async: true; value: Promise<unknown> } }).waitAsync;

/** Host side: settles once the thread is done loading a handler's modules (LOAD_WAIT_MS at most); undefined when it is not loading. */
export function loadEnded(wake: Int32Array): Promise<unknown> | undefined {
  const waited = load(wake, LOADING) === 1 ? waitAsync(wake, LOADING, 1, LOAD_WAIT_MS) : undefined;
  return waited?.async ? waited.value : undefined;
}

/** The execution (its k, as an int32) the host stopped while its thread loaded its handler's modules: the thread must not run that handler once loaded. */
export const STOPPED = 10;
/**
 * The slot where the thread names the execution it began last (its `k` as an int32): as it takes
 * the task, once the checks that may decline it passed and before it reads it (reading it may run
 * what its handler patched). One it took and did not begin (it died first, of what an earlier
 * handler left) may run on another thread; one it began never does.
 */
export const BEGUN = 12;
const READ = 1;
const WAITING = 2;
/** Set by the host while whoever takes the execution's output is behind (holdSending): the thread sends nothing more until it is cleared. */
const HELD = 5;
const SENT = 6;
const ANSWERED = 7;
const VERDICT = 11;

// Taken before plugin code can replace them (child-table.ts uses them too).
export const load = Atomics.load;
export const store = Atomics.store;
const wait = Atomics.wait;
export const add = Atomics.add;
export const notify = Atomics.notify;
const clone = structuredClone;
const apply = Reflect.apply;
const keys = Object.keys;
const getPrototypeOf = Object.getPrototypeOf;
const mapForEach = Map.prototype.forEach;
const setForEach = Set.prototype.forEach;
const { isArrayBuffer, isSharedArrayBuffer, isTypedArray, isDataView, isNativeError } = process.getBuiltinModule('node:util').types;
const [OBJECT, ARRAY, MAP, SET, DATE, REGEXP] = [Object, Array, Map, Set, Date, RegExp].map((type) => type.prototype as object);
const getterOf = (proto: object, key: string) => Object.getOwnPropertyDescriptor(proto, key)!.get!;
const typedArrayBuffer = getterOf(getPrototypeOf(Uint8Array.prototype) as object, 'buffer');
const dataViewBuffer = getterOf(DataView.prototype, 'buffer');
const arrayBufferBytes = getterOf(ArrayBuffer.prototype, 'byteLength');
const sharedBufferBytes = getterOf(SharedArrayBuffer.prototype, 'byteLength');
const regexpSource = getterOf(RegExp.prototype, 'source');
/** A BigInt this large or larger takes the whole window: weighing it exactly costs as much as its size. */
const BIG_INT = 1n << 1024n;
/** weightOf's word for a value that takes the whole window. */
const WHOLE_WINDOW = -1;

/** Thread side: call before each message of an execution; blocks while the host is WINDOW units behind. */
export class ThreadFlow {
  readonly #shared: Int32Array;
  #sent = 0;

  constructor(shared: Int32Array) {
    this.#shared = shared;
  }

  /** Wait for room for a message of `units`, then count it as sent. */
  pace(units: number): void {
    const shared = this.#shared;
    while (((this.#sent - load(shared, READ)) | 0) >= WINDOW || load(shared, HELD) === 1) {
      store(shared, WAITING, 1);
      const read = load(shared, READ);
      if (((this.#sent - read) | 0) < WINDOW && load(shared, HELD) === 0) break;
      wait(shared, READ, read, WAIT_SLICE_MS);
    }
    store(shared, WAITING, 0);
    this.#sent = (this.#sent + units) | 0;
    store(shared, SENT, this.#sent);
  }

  /** A message counted by pace() could not be posted after all: the host will never read it. */
  unsent(units: number): void {
    this.#sent = (this.#sent - units) | 0;
    store(this.#shared, SENT, this.#sent);
  }

  /** Say, before posting it, that the runtime answers (or declines) execution `k`. */
  answering(k: number): void {
    store(this.#shared, ANSWERED, k);
  }

  /** Say, before posting it, that the runtime sends its verdict after execution `k` (which it answered `pending`). */
  verdictOn(k: number): void {
    store(this.#shared, VERDICT, k);
  }
}

/** Host side: whether the thread's runtime counted `received` units (all the host has read of it) as sent. */
export function countedAsSent(shared: Int32Array, received: number): boolean {
  return ((load(shared, SENT) - received) | 0) >= 0;
}

/** Host side: whether the thread's runtime answered (or declined) execution `k` last. */
export function answeredBy(shared: Int32Array, k: number): boolean {
  return load(shared, ANSWERED) === k;
}

/** Host side: whether the thread's runtime sent its verdict after execution `k` last. */
export function verdictBy(shared: Int32Array, k: number): boolean {
  return load(shared, VERDICT) === k;
}

/** Host side: the host has read a message of `units`; wakes the thread if it waits for that. */
export function markRead(shared: Int32Array, units: number): void {
  add(shared, READ, units);
  if (load(shared, WAITING) === 1) notify(shared, READ);
}

/** Host side: hold the thread at its next message (true) until released (false). */
export function holdSending(shared: Int32Array, held: boolean): void {
  store(shared, HELD, held ? 1 : 0);
  if (!held && load(shared, WAITING) === 1) notify(shared, READ);
}

/**
 * A message of the handler's (a log line, an event, a call) as it will cross, and what it weighs:
 * one unit, plus one per 4 KB of its text, bytes and values. Weighed on a structured clone, sent
 * as that clone: a getter of the handler's is read once (read again by postMessage, it could send
 * 4 MB where '' was weighed), and what a walk of the message's own keys would not see is counted
 * (a Map's or a Set's entries, an Error's message and stack, an ArrayBuffer, the whole buffer of
 * a view, which structured clone sends whole), through getters taken before plugin code could
 * redefine them. A value of a kind not weighed here (a Blob, a KeyObject …), a BigInt past 1024
 * bits, or more than WEIGH_NODES values, takes the whole window. Throws what structured clone
 * throws for a value it refuses (RunnerSession names it).
 */
export function weighedCopy<T>(message: T): { copy: T; units: number } {
  const copy = clone(message);
  let bytes = 0;
  let looked = 0;
  const stack: unknown[] = [copy];
  const depths: number[] = [0];
  // Structured clone sends a buffer once, however many views hold it, and an object once, however
  // many times it is met (a cycle is a reference back, not a deeper level).
  const buffers = new Set<unknown>();
  const objects = new Set<object>();
  while (stack.length > 0) {
    if (++looked > WEIGH_NODES) return { copy, units: WINDOW };
    const depth = depths.pop()!;
    const value = stack.pop();
    if (typeof value === 'object' && value !== null) {
      if (objects.has(value)) continue;
      objects.add(value);
    }
    const before = stack.length;
    const weight = weightOf(value, stack, buffers);
    if (weight === WHOLE_WINDOW) return { copy, units: WINDOW };
    if (stack.length > before && depth >= MAX_DEPTH) throw tooDeepForTheHost();
    for (let i = before; i < stack.length; i++) depths.push(depth + 1);
    bytes += NODE_BYTES + weight;
  }
  // More than the window weighs as the window (the next message waits until the host has read this one).
  return { copy, units: Math.min(WINDOW, 1 + Math.floor(bytes / UNIT_BYTES)) };
}

/**
 * The deepest a message's values may nest. The thread's stack is larger than the host's main
 * thread's: a value nested a few thousand levels deep is copied here and cannot be rebuilt there
 * (plain objects: ~1,900 levels on Node's default stack), which would fail the whole execution
 * (`unreadable-message`); refused here, where it is sent, as too deep (RunnerSession names it),
 * the handler can catch it, as on the other backends.
 */
const MAX_DEPTH = 1000;

function tooDeepForTheHost(): RangeError {
  return new RangeError(`Maximum call stack size exceeded: nested more than ${MAX_DEPTH} levels deep, more than the host's main thread may be able to rebuild`);
}

/** What `value` itself weighs in bytes (what it holds is pushed onto `inside`; `buffers`: those already weighed), or WHOLE_WINDOW. */
function weightOf(value: unknown, inside: unknown[], buffers: Set<unknown>): number {
  if (typeof value === 'string') return 2 * value.length;
  if (typeof value === 'bigint') return value < BIG_INT && value > -BIG_INT ? 128 : WHOLE_WINDOW;
  if (value === null || typeof value !== 'object') return 0;
  if (isTypedArray(value)) return bufferBytes(apply(typedArrayBuffer, value, []), buffers);
  if (isDataView(value)) return bufferBytes(apply(dataViewBuffer, value, []), buffers);
  if (isArrayBuffer(value)) return bufferBytes(value, buffers);
  let bytes = 0;
  const proto = getPrototypeOf(value);
  if (proto === MAP) apply(mapForEach, value, [(v: unknown, k: unknown) => inside.push(k, v)]);
  else if (proto === SET) apply(setForEach, value, [(v: unknown) => inside.push(v)]);
  else if (isNativeError(value)) inside.push((value as Error).message, (value as Error).stack, (value as Error).cause);
  else if (proto === REGEXP) bytes += 2 * (apply(regexpSource, value, []) as string).length;
  else if (proto !== OBJECT && proto !== ARRAY && proto !== null && proto !== DATE) return WHOLE_WINDOW;
  // A clone's properties are its own data properties: no getter of the handler's runs here.
  for (const key of keys(value)) {
    bytes += 2 * key.length;
    inside.push((value as Record<string, unknown>)[key]);
  }
  return bytes;
}

/** The bytes of an ArrayBuffer or SharedArrayBuffer (read by the getters taken at load), the first time it is met. */
function bufferBytes(buffer: unknown, buffers: Set<unknown>): number {
  if (buffers.has(buffer)) return 0;
  buffers.add(buffer);
  if (isArrayBuffer(buffer)) return apply(arrayBufferBytes, buffer, []) as number;
  return isSharedArrayBuffer(buffer) ? (apply(sharedBufferBytes, buffer, []) as number) : 0;
}
