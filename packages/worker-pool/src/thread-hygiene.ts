/**
 * Thread side: what keeps a reused thread clean between executions of different plugins.
 *
 * Everything here is captured when the thread starts, before any plugin code has run on it, and
 * the checks themselves only use those captured references: a handler that replaced
 * `Function.prototype.call` or `Reflect.apply` cannot blind them.
 */
import type { MessagePort } from 'node:worker_threads';
import type { LeftBehind } from './later-watch.js';
import type { ListenerWatch } from './listener-watch.js';
import type { ThreadRetireReason } from './thread-protocol.js';

const apply = Reflect.apply;
/** The thread's global object, as it was when the thread started. */
const theGlobal = globalThis;
const ownKeys = Reflect.ownKeys;
const getPrototypeOf = Object.getPrototypeOf;
const getOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor;
const isExtensible = Object.isExtensible;
const postMessage = (globalThis as unknown as { MessagePort: typeof MessagePort }).MessagePort.prototype.postMessage;
const hasOwn = Object.hasOwn;
const keysOf = Object.keys;
const activeResources = process.getActiveResourcesInfo.bind(process);

/**
 * Intrinsics whose identity must survive an execution, by holder: what the thread's own runtime,
 * core's handler runtime and typical handler code rely on. A handler that replaces one of them
 * gets its thread retired. (Additions to the common prototypes are caught separately, below.)
 */
const WATCHED: Record<string, string> = {
  globalThis:
    'globalThis JSON structuredClone Promise Object Function Reflect Array String Number parseInt parseFloat isNaN isFinite Boolean Symbol BigInt ' +
    'Map Set WeakMap WeakSet WeakRef Error TypeError RangeError SyntaxError ReferenceError EvalError URIError AggregateError Date RegExp Math ' +
    'ArrayBuffer SharedArrayBuffer DataView Uint8Array Int32Array Float64Array Atomics Proxy Buffer setTimeout clearTimeout setInterval ' +
    'clearInterval setImmediate clearImmediate queueMicrotask process console URL URLSearchParams TextEncoder TextDecoder AbortController ' +
    'AbortSignal EventTarget Event MessageChannel MessagePort fetch Intl',
  JSON: 'parse stringify',
  Promise: 'resolve reject all allSettled race any',
  'Promise.prototype': 'then catch finally constructor',
  Object:
    'defineProperty defineProperties getOwnPropertyDescriptor getOwnPropertyDescriptors getOwnPropertyNames getOwnPropertySymbols ' +
    'getPrototypeOf setPrototypeOf keys values entries fromEntries assign create freeze isFrozen hasOwn is',
  'Object.prototype': 'hasOwnProperty toString valueOf isPrototypeOf propertyIsEnumerable constructor',
  'Function.prototype': 'call apply bind toString [Symbol.hasInstance]',
  Reflect: 'apply construct get set has ownKeys defineProperty getPrototypeOf getOwnPropertyDescriptor',
  Array: 'isArray from of',
  'Array.prototype':
    '[Symbol.iterator] push pop shift unshift slice splice concat join map filter forEach reduce some every find findIndex indexOf ' +
    'includes sort keys values entries flat flatMap fill at',
  String: 'fromCharCode',
  'String.prototype':
    '[Symbol.iterator] slice substring split replace replaceAll includes startsWith endsWith indexOf trim toLowerCase toUpperCase ' +
    'padStart padEnd repeat charCodeAt match toString',
  Number: 'isFinite isInteger isNaN parseInt parseFloat',
  'Number.prototype': 'toString toFixed',
  Symbol: 'for iterator asyncIterator',
  'Map.prototype': 'get set has delete clear forEach [Symbol.iterator] keys values entries',
  'Set.prototype': 'add has delete clear [Symbol.iterator]',
  'WeakMap.prototype': 'get set has',
  'WeakSet.prototype': 'add has',
  Error: 'captureStackTrace prepareStackTrace stackTraceLimit [Symbol.hasInstance]',
  Intl: 'DateTimeFormat NumberFormat Collator PluralRules RelativeTimeFormat ListFormat Segmenter',
  'Error.prototype': 'toString',
  Date: 'now',
  'Date.prototype': 'getTime toISOString toJSON',
  'RegExp.prototype': 'exec test [Symbol.replace] [Symbol.split] [Symbol.match]',
  Math: 'random max min floor ceil round abs',
  Atomics: 'wait notify add load store',
  Buffer: 'from alloc isBuffer concat byteLength',
  'Buffer.prototype': 'toString write',
  process: 'nextTick exit on emit emitWarning cwd env listenerCount',
  console: 'log info warn error debug',
  'AbortController.prototype': 'abort',
  'AbortSignal.prototype': 'throwIfAborted',
  'EventTarget.prototype': 'addEventListener removeEventListener dispatchEvent',
  'MessagePort.prototype': 'postMessage on emit close',
};

/** One watched property as it was when the thread started; `source` reads it from the global scope. */
interface Watched {
  source: string;
  holder: Record<PropertyKey, unknown>;
  key: PropertyKey;
  value: unknown;
}

export interface IntrinsicsGuard {
  /** True when no watched intrinsic was replaced and nothing was added to a common prototype. */
  intact(): boolean;
}

/**
 * Capture the intrinsics now. The check compiles to one function with a static property read per
 * watched path: monomorphic reads cost about a nanosecond each, where a generic loop over
 * [object, key] pairs costs tens (it runs after every execution, so this matters).
 */
export function captureIntrinsics(): IntrinsicsGuard {
  // `for…in` over one instance of each of the most used prototypes lists anything enumerable added
  // up its chain (~0.15 µs each, so few; replacements elsewhere are caught by WATCHED).
  const samples = [{}, [], function sample() {}, Promise.resolve()].filter((sample) => !hasEnumerable(sample));
  // process.env's prototype, looked up by every variable name it has not: one of the handler's
  // own, or one planted on the thread's, would hand later executions variables (and a getter's code).
  const env = process.env;
  const envProto = getPrototypeOf(env) as object;
  // Read through, an accessor put in place of `process` or `process.env` could hand the checks
  // the original and other code its own: the two are compared as properties, not read.
  // So are the constructors' species, accessors that every `map`, `then` or `slice` consults.
  const species = [Array, Promise, RegExp, Map, Set, ArrayBuffer].map((constructor) => slotOf(constructor, Symbol.species));
  const slots = [slotOf(theGlobal, 'process'), slotOf(process, 'env'), ...species];
  const processObject = process;
  const shapes = [...COMMON_PROTOTYPES, envProto].map(shapeOf);
  const watched = watchedProperties();
  const values = watched.map((w) => w.value);
  let compiled: ((values: readonly unknown[]) => boolean) | undefined;
  try {
    const check = new Function('v', 'g', `"use strict"; return ${watched.map((w, i) => `${w.source} === v[${i}]`).join(' && ')};`) as (v: readonly unknown[], g: object) => boolean;
    compiled = (v) => check(v, theGlobal);
  } catch {
    // Code generation from strings is disabled (--disallow-code-generation-from-strings): the plain loop.
  }

  return {
    intact(): boolean {
      try {
        for (let i = 0; i < slots.length; i++) if (!sameSlot(slots[i]!)) return false;
        // Node's own accessor for `process` (checked just above) hands out what was assigned to it.
        if ((theGlobal as { process?: unknown }).process !== processObject) return false;
        if (compiled) {
          if (!compiled(values)) return false;
        } else {
          for (let i = 0; i < watched.length; i++) if (watched[i]!.holder[watched[i]!.key] !== watched[i]!.value) return false;
        }
        for (let i = 0; i < samples.length; i++) if (hasEnumerable(samples[i]!)) return false;
        if (getPrototypeOf(env) !== envProto) return false;
        for (let i = 0; i < shapes.length; i++) if (!sameShape(shapes[i]!)) return false;
        return true;
      } catch {
        // A getter planted by the handler threw: that is tampering too.
        return false;
      }
    },
  };
}

/** What `async` and generator functions, and the objects generators and array iterators make, inherit from. */
const functionKinds = [async () => {}, function* generator() {}, async function* asyncGenerator() {}].map((f) => getPrototypeOf(f) as { prototype?: object });
const iteratorKinds = [functionKinds[1]!.prototype!, functionKinds[2]!.prototype!, getPrototypeOf([][Symbol.iterator]()) as object];

/**
 * The prototypes every plugin's code, and the runtime's own (a handler's import decodes its
 * wrapper with `TextDecoder.prototype.decode`), goes through. Their own properties whole (names
 * and symbols in order, each one's value or accessors and attributes), whether they can be
 * extended, and what they inherit from are compared: a key added, deleted or swapped for another
 * (even non-enumerable, even a symbol such as `Symbol.isConcatSpreadable`), a method replaced
 * (`Array.prototype.reverse`, `AsyncFunction.prototype.constructor`), a property made read-only
 * (which breaks every object's assignment of it), a prototype frozen, or one given another
 * prototype (a Proxy under `String.prototype`) is tampering.
 */
const COMMON_PROTOTYPES: readonly object[] = [
  Object.prototype,
  Function.prototype,
  Array.prototype,
  String.prototype,
  Number.prototype,
  Boolean.prototype,
  Symbol.prototype,
  BigInt.prototype,
  Promise.prototype,
  Error.prototype,
  // Their `name` (or a getter put there) is read when any plugin's TypeError is reported.
  ...[TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError, AggregateError].map((constructor) => constructor.prototype),
  Map.prototype,
  Set.prototype,
  RegExp.prototype,
  Date.prototype,
  Uint8Array.prototype,
  getPrototypeOf(Uint8Array.prototype) as object,
  getPrototypeOf(Uint8Array) as object,
  ...functionKinds,
  ...iteratorKinds,
  getPrototypeOf(iteratorKinds[2]) as object,
  TextDecoder.prototype,
  TextEncoder.prototype,
];

interface Shape {
  readonly object: object;
  readonly keys: readonly PropertyKey[];
  readonly properties: readonly PropertyDescriptor[];
  readonly extensible: boolean;
  readonly proto: object | null;
}

function shapeOf(object: object): Shape {
  const keys = ownKeys(object);
  return { object, keys, properties: keys.map((key) => getOwnPropertyDescriptor(object, key)!), extensible: isExtensible(object), proto: getPrototypeOf(object) };
}

function sameShape(shape: Shape): boolean {
  const { object, keys, properties } = shape;
  if (isExtensible(object) !== shape.extensible || getPrototypeOf(object) !== shape.proto) return false;
  const now = ownKeys(object);
  if (now.length !== keys.length) return false;
  for (let i = 0; i < now.length; i++) if (now[i] !== keys[i] || !sameProperty(getOwnPropertyDescriptor(object, now[i]!)!, properties[i]!)) return false;
  return true;
}

function sameProperty(now: PropertyDescriptor, then: PropertyDescriptor): boolean {
  if (now.value !== then.value || now.get !== then.get || now.set !== then.set) return false;
  return now.writable === then.writable && now.enumerable === then.enumerable && now.configurable === then.configurable;
}

interface Slot {
  holder: object;
  key: PropertyKey;
  descriptor: PropertyDescriptor | undefined;
}

function slotOf(holder: object, key: PropertyKey): Slot {
  return { holder, key, descriptor: getOwnPropertyDescriptor(holder, key) };
}

/** The property is what it was: the same value, or the same accessors. */
function sameSlot({ holder, key, descriptor }: Slot): boolean {
  const now = getOwnPropertyDescriptor(holder, key);
  return now?.value === descriptor?.value && now?.get === descriptor?.get && now?.set === descriptor?.set;
}

function hasEnumerable(object: object): boolean {
  for (const _ in object) return true;
  return false;
}

/** Every watched data property present on this thread; not accessors: reading one (a lazy global) could run code or load modules. */
function watchedProperties(): Watched[] {
  const watched: Watched[] = [];
  for (const [path, names] of Object.entries(WATCHED)) {
    let holder: unknown = globalThis;
    if (path !== 'globalThis') for (const part of path.split('.')) holder = holder == null ? undefined : (holder as Record<string, unknown>)[part];
    if (holder === null || (typeof holder !== 'object' && typeof holder !== 'function')) continue;
    for (const name of names.split(' ')) {
      const symbol = /^\[Symbol\.(\w+)\]$/.exec(name)?.[1];
      const key = symbol ? (Symbol as unknown as Record<string, symbol>)[symbol]! : name;
      const value = dataValue(holder, key);
      // Read from the global object captured at the start (`g`), not through the name `globalThis`, which a handler can shadow.
      const base = path === 'globalThis' ? 'g' : `g.${path}`;
      if (value) watched.push({ source: symbol ? `${base}${name}` : `${base}.${name}`, holder: holder as Record<PropertyKey, unknown>, key, value: value.value });
    }
  }
  return watched;
}

/** The data property `key` of `object` or up its chain, if it is one. */
function dataValue(object: object, key: PropertyKey): { value: unknown } | undefined {
  for (let o: object | null = object; o; o = getPrototypeOf(o) as object | null) {
    const descriptor = Reflect.getOwnPropertyDescriptor(o, key);
    if (descriptor) return 'value' in descriptor ? { value: descriptor.value } : undefined;
  }
  return undefined;
}

/**
 * The environment a handler sees: only the variables its manifest declares (`permissions.env`),
 * taken from the thread's starting environment, which is kept here and removed from
 * `process.env`. Each thread has its own copy of the environment (not SHARE_ENV), so this
 * affects nobody else; what a handler sets is gone before the next execution.
 */
export class EnvGate {
  readonly #base: Record<string, string>;

  constructor(env: NodeJS.ProcessEnv) {
    const base: Record<string, string> = Object.create(null);
    for (const key of keysOf(env)) {
      const value = env[key];
      if (value !== undefined) base[key] = value;
    }
    this.#base = base;
    for (const key of keysOf(env)) delete env[key];
  }

  /** Make `process.env` hold exactly `allowed` (those the starting environment has). */
  apply(env: NodeJS.ProcessEnv, allowed: readonly string[] | undefined): void {
    const present = keysOf(env);
    if (present.length === 0 && (allowed === undefined || allowed.length === 0)) return;
    for (let i = 0; i < present.length; i++) {
      const key = present[i]!;
      if (!allowed || !allowed.includes(key) || env[key] !== this.#base[key]) delete env[key];
    }
    if (!allowed) return;
    for (let i = 0; i < allowed.length; i++) {
      const key = allowed[i]!;
      if (hasOwn(this.#base, key)) env[key] = this.#base[key];
    }
  }
}

/**
 * Handles a handler left running (timers, sockets, pending fs requests) would fire during the
 * next execution on this thread, and be blamed on it. Counted against the thread's baseline.
 */
export class HandleWatch {
  #baseline = -1;

  /** Call when the thread is idle and clean (before its first execution). */
  mark(): void {
    if (this.#baseline < 0) this.#baseline = liveResources();
  }

  leftover(): boolean {
    return liveResources() > this.#baseline;
  }
}

/** Resources keeping the loop alive, less those already closing (a module load leaves a CloseReq behind for a moment). */
function liveResources(): number {
  const resources = activeResources();
  let live = 0;
  for (let i = 0; i < resources.length; i++) if (resources[i] !== 'CloseReq') live++;
  return live;
}

/**
 * Executions a thread that has code left to run later (LeftBehind `later`) still takes, all of the
 * handler that left it, before it is retired: what each execution leaves adds up.
 */
export const LATER_KEPT_EXECUTIONS = 64;

/**
 * The retire decision after an execution, or undefined to keep the thread: what it left behind
 * (`handlesLeft`: handles above the thread's baseline, more descriptors open than FdWatch lets
 * a thread keep, or a Web Lock held or waited for: LockWatch), or its quota of executions. Code
 * left to run later keeps the thread for the same handler (`laterRuns`: executions since the
 * first that left some), as what it did to the thread's globals does: both are looked at when
 * another handler's task comes (worker-entry.ts).
 */
export function retireReason(handlesLeft: boolean, left: LeftBehind, laterRuns: number, executions: number, maxExecutions: number): ThreadRetireReason | undefined {
  if (left === 'resource' || laterRuns > LATER_KEPT_EXECUTIONS || handlesLeft) return 'handles-left';
  if (maxExecutions > 0 && executions >= maxExecutions) return 'recycled';
  return undefined;
}

/**
 * Whether the handlers that ran on the thread changed its globals: replaced an intrinsic, added to
 * a common prototype, left a `process` listener or an uncaught-exception capture callback.
 */
export function globalsTampered(guard: IntrinsicsGuard, listeners: ListenerWatch): boolean {
  return !guard.intact() || listeners.changed();
}

/**
 * Tell `onClose` of each MessagePort about to be closed on this thread, however `close` is
 * reached (the channel to the host is among the thread's handles, where plugin code can find
 * it). Installed before the intrinsics are captured: this wrapper is what a handler must leave.
 */
export function watchPortClose(onClose: (port: MessagePort) => void): void {
  const proto = (theGlobal as unknown as { MessagePort: typeof MessagePort }).MessagePort.prototype;
  const closePort = proto.close;
  proto.close = function close(this: MessagePort): void {
    onClose(this);
    apply(closePort, this, []);
  };
}

/** `port.postMessage(message)` with the thread's original postMessage and Reflect.apply. */
export function pristinePost(port: MessagePort, message: unknown): void {
  apply(postMessage, port, [message]);
}
