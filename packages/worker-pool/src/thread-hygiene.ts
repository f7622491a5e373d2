/**
 * Thread side: what keeps a reused thread clean between executions of different plugins.
 *
 * Everything here is captured when the thread starts, before any plugin code has run on it, and
 * the checks themselves only use those captured references: a handler that replaced
 * `Function.prototype.call` or `Reflect.apply` cannot blind them.
 */
import type { MessagePort } from 'node:worker_threads';
import type { RetireReason } from './thread-protocol.js';

const apply = Reflect.apply;
const ownKeys = Reflect.ownKeys;
const getPrototypeOf = Object.getPrototypeOf;
const postMessage = (globalThis as unknown as { MessagePort: typeof MessagePort }).MessagePort.prototype.postMessage;
const hasOwn = Object.hasOwn;
const keysOf = Object.keys;
const activeResources = process.getActiveResourcesInfo.bind(process);

/**
 * Intrinsics whose identity must survive an execution: what the thread's own runtime, core's
 * handler runtime and typical handler code rely on. A handler that replaces one of them gets its
 * thread retired. (Additions to the common prototypes are caught separately, below.)
 */
const WATCHED = [
  'globalThis.globalThis', 'globalThis.JSON', 'JSON.parse', 'JSON.stringify', 'globalThis.structuredClone',
  'globalThis.Promise', 'Promise.prototype.then', 'Promise.prototype.catch', 'Promise.prototype.finally', 'Promise.resolve', 'Promise.reject',
  'Promise.all', 'Promise.allSettled', 'Promise.race', 'Promise.any', 'Promise.prototype.constructor',
  'globalThis.Object', 'Object.defineProperty', 'Object.defineProperties', 'Object.getOwnPropertyDescriptor', 'Object.getOwnPropertyDescriptors',
  'Object.getOwnPropertyNames', 'Object.getOwnPropertySymbols', 'Object.getPrototypeOf', 'Object.setPrototypeOf', 'Object.keys', 'Object.values',
  'Object.entries', 'Object.fromEntries', 'Object.assign', 'Object.create', 'Object.freeze', 'Object.isFrozen', 'Object.hasOwn', 'Object.is',
  'Object.prototype.hasOwnProperty', 'Object.prototype.toString', 'Object.prototype.valueOf', 'Object.prototype.isPrototypeOf',
  'Object.prototype.propertyIsEnumerable', 'Object.prototype.constructor',
  'globalThis.Function', 'Function.prototype.call', 'Function.prototype.apply', 'Function.prototype.bind', 'Function.prototype.toString',
  'Function.prototype[Symbol.hasInstance]',
  'globalThis.Reflect', 'Reflect.apply', 'Reflect.construct', 'Reflect.get', 'Reflect.set', 'Reflect.has', 'Reflect.ownKeys',
  'Reflect.defineProperty', 'Reflect.getPrototypeOf', 'Reflect.getOwnPropertyDescriptor',
  'globalThis.Array', 'Array.isArray', 'Array.from', 'Array.of', 'Array.prototype[Symbol.iterator]', 'Array.prototype.push', 'Array.prototype.pop',
  'Array.prototype.shift', 'Array.prototype.unshift', 'Array.prototype.slice', 'Array.prototype.splice', 'Array.prototype.concat',
  'Array.prototype.join', 'Array.prototype.map', 'Array.prototype.filter', 'Array.prototype.forEach', 'Array.prototype.reduce',
  'Array.prototype.some', 'Array.prototype.every', 'Array.prototype.find', 'Array.prototype.findIndex', 'Array.prototype.indexOf',
  'Array.prototype.includes', 'Array.prototype.sort', 'Array.prototype.keys', 'Array.prototype.values', 'Array.prototype.entries',
  'Array.prototype.flat', 'Array.prototype.flatMap', 'Array.prototype.fill', 'Array.prototype.at',
  'globalThis.String', 'String.fromCharCode', 'String.prototype[Symbol.iterator]', 'String.prototype.slice', 'String.prototype.substring',
  'String.prototype.split', 'String.prototype.replace', 'String.prototype.replaceAll', 'String.prototype.includes', 'String.prototype.startsWith',
  'String.prototype.endsWith', 'String.prototype.indexOf', 'String.prototype.trim', 'String.prototype.toLowerCase', 'String.prototype.toUpperCase',
  'String.prototype.padStart', 'String.prototype.padEnd', 'String.prototype.repeat', 'String.prototype.charCodeAt', 'String.prototype.match',
  'String.prototype.toString',
  'globalThis.Number', 'Number.isFinite', 'Number.isInteger', 'Number.isNaN', 'Number.parseInt', 'Number.parseFloat', 'Number.prototype.toString',
  'Number.prototype.toFixed', 'globalThis.parseInt', 'globalThis.parseFloat', 'globalThis.isNaN', 'globalThis.isFinite',
  'globalThis.Boolean', 'globalThis.Symbol', 'Symbol.for', 'Symbol.iterator', 'Symbol.asyncIterator', 'globalThis.BigInt',
  'globalThis.Map', 'Map.prototype.get', 'Map.prototype.set', 'Map.prototype.has', 'Map.prototype.delete', 'Map.prototype.clear',
  'Map.prototype.forEach', 'Map.prototype[Symbol.iterator]', 'Map.prototype.keys', 'Map.prototype.values', 'Map.prototype.entries',
  'globalThis.Set', 'Set.prototype.add', 'Set.prototype.has', 'Set.prototype.delete', 'Set.prototype.clear', 'Set.prototype[Symbol.iterator]',
  'globalThis.WeakMap', 'WeakMap.prototype.get', 'WeakMap.prototype.set', 'WeakMap.prototype.has', 'globalThis.WeakSet', 'WeakSet.prototype.add',
  'WeakSet.prototype.has', 'globalThis.WeakRef',
  'globalThis.Error', 'Error.captureStackTrace', 'Error.prototype.toString', 'globalThis.TypeError', 'globalThis.RangeError',
  'globalThis.SyntaxError', 'globalThis.ReferenceError', 'globalThis.EvalError', 'globalThis.URIError', 'globalThis.AggregateError',
  'globalThis.Date', 'Date.now', 'Date.prototype.getTime', 'Date.prototype.toISOString', 'Date.prototype.toJSON',
  'globalThis.RegExp', 'RegExp.prototype.exec', 'RegExp.prototype.test', 'RegExp.prototype[Symbol.replace]', 'RegExp.prototype[Symbol.split]',
  'RegExp.prototype[Symbol.match]',
  'globalThis.Math', 'Math.random', 'Math.max', 'Math.min', 'Math.floor', 'Math.ceil', 'Math.round', 'Math.abs',
  'globalThis.ArrayBuffer', 'globalThis.SharedArrayBuffer', 'globalThis.DataView', 'globalThis.Uint8Array', 'globalThis.Int32Array',
  'globalThis.Float64Array', 'globalThis.Atomics', 'Atomics.wait', 'Atomics.notify', 'Atomics.add', 'Atomics.load', 'Atomics.store',
  'globalThis.Proxy', 'globalThis.Buffer', 'Buffer.from', 'Buffer.alloc', 'Buffer.isBuffer', 'Buffer.concat', 'Buffer.byteLength',
  'Buffer.prototype.toString', 'Buffer.prototype.write',
  'globalThis.setTimeout', 'globalThis.clearTimeout', 'globalThis.setInterval', 'globalThis.clearInterval', 'globalThis.setImmediate',
  'globalThis.clearImmediate', 'globalThis.queueMicrotask',
  'globalThis.process', 'process.nextTick', 'process.exit', 'process.on', 'process.emit', 'process.emitWarning', 'process.cwd',
  'globalThis.console', 'console.log', 'console.info', 'console.warn', 'console.error', 'console.debug',
  'globalThis.URL', 'globalThis.URLSearchParams', 'globalThis.TextEncoder', 'globalThis.TextDecoder',
  'globalThis.AbortController', 'globalThis.AbortSignal', 'AbortController.prototype.abort', 'AbortSignal.prototype.throwIfAborted',
  'globalThis.EventTarget', 'EventTarget.prototype.addEventListener', 'EventTarget.prototype.removeEventListener',
  'EventTarget.prototype.dispatchEvent', 'globalThis.Event',
  'globalThis.MessageChannel', 'globalThis.MessagePort', 'MessagePort.prototype.postMessage', 'MessagePort.prototype.on',
  'MessagePort.prototype.emit',
];

/**
 * One instance of each of the most used prototypes: `for…in` over it lists anything enumerable
 * added up its chain. (Each costs ~0.15 µs per check, so the list stays short; replacements on
 * the others are caught by WATCHED.)
 */
function prototypeSamples(): object[] {
  return [{}, [], function sample() {}, Promise.resolve()];
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
  const samples = prototypeSamples().filter((sample) => !hasEnumerable(sample));
  const objectProto = Object.prototype;
  const objectProtoKeys = ownKeys(objectProto).length;
  const chains: Array<[object, object | null]> = [Array.prototype, Function.prototype, Promise.prototype, Error.prototype, Map.prototype].map(
    (proto) => [proto, getPrototypeOf(proto)],
  );

  let compiled: ((values: readonly unknown[]) => boolean) | undefined;
  let values: unknown[] = [];
  let watched = WATCHED;
  try {
    // Only data properties: reading an accessor (a lazy global) could run code or load modules.
    watched = WATCHED.filter((p) => isDataPath(p));
    values = (new Function(`"use strict"; return [${watched.join(', ')}];`) as () => unknown[])();
    compiled = new Function('v', `"use strict"; return ${watched.map((p, i) => `${p} === v[${i}]`).join(' && ')};`) as (v: readonly unknown[]) => boolean;
  } catch {
    // Code generation from strings is disabled (--disallow-code-generation-from-strings):
    // fall back to a plain loop over resolved holders.
    compiled = undefined;
  }
  const fallback = compiled ? undefined : resolveHolders(watched);

  return {
    intact(): boolean {
      try {
        if (compiled) {
          if (!compiled(values)) return false;
        } else {
          for (let i = 0; i < fallback!.length; i++) if (fallback![i]![0][fallback![i]![1]] !== fallback![i]![2]) return false;
        }
        for (let i = 0; i < samples.length; i++) if (hasEnumerable(samples[i]!)) return false;
        if (ownKeys(objectProto).length !== objectProtoKeys || getPrototypeOf(objectProto) !== null) return false;
        for (let i = 0; i < chains.length; i++) if (getPrototypeOf(chains[i]![0]) !== chains[i]![1]) return false;
        return true;
      } catch {
        // A getter planted by the handler threw: that is tampering too.
        return false;
      }
    },
  };
}

function hasEnumerable(object: object): boolean {
  for (const _ in object) return true;
  return false;
}

function isDataPath(path: string): boolean {
  const holder = pathHolder(path);
  if (!holder) return false;
  const descriptor = Reflect.getOwnPropertyDescriptor(holder.object, holder.key) ?? inheritedDescriptor(holder.object, holder.key);
  return descriptor !== undefined && 'value' in descriptor;
}

function inheritedDescriptor(object: object, key: PropertyKey): PropertyDescriptor | undefined {
  for (let o = getPrototypeOf(object) as object | null; o; o = getPrototypeOf(o) as object | null) {
    const d = Reflect.getOwnPropertyDescriptor(o, key);
    if (d) return d;
  }
  return undefined;
}

function pathHolder(watchedPath: string): { object: Record<PropertyKey, unknown>; key: PropertyKey } | undefined {
  const path = watchedPath.startsWith('globalThis.') ? watchedPath : `globalThis.${watchedPath}`;
  const bracket = /^(.*)\[Symbol\.(\w+)\]$/.exec(path);
  const [parentPath, key] = bracket
    ? [bracket[1]!, (Symbol as unknown as Record<string, symbol>)[bracket[2]!]!]
    : [path.slice(0, path.lastIndexOf('.')), path.slice(path.lastIndexOf('.') + 1)];
  let object: unknown = globalThis;
  for (const part of parentPath.split('.').slice(1)) {
    if (object === null || (typeof object !== 'object' && typeof object !== 'function')) return undefined;
    object = (object as Record<string, unknown>)[part];
  }
  if (object === null || (typeof object !== 'object' && typeof object !== 'function')) return undefined;
  return { object: object as Record<PropertyKey, unknown>, key };
}

function resolveHolders(paths: readonly string[]): Array<[Record<PropertyKey, unknown>, PropertyKey, unknown]> {
  const out: Array<[Record<PropertyKey, unknown>, PropertyKey, unknown]> = [];
  for (const path of paths) {
    const holder = pathHolder(path);
    if (holder) out.push([holder.object, holder.key, holder.object[holder.key]]);
  }
  return out;
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

/** The retire decision after an execution, or undefined to keep the thread. */
export function retireReason(guard: IntrinsicsGuard, handles: HandleWatch, executions: number, maxExecutions: number): RetireReason | undefined {
  if (!guard.intact()) return 'globals-tampered';
  if (handles.leftover()) return 'handles-left';
  if (maxExecutions > 0 && executions >= maxExecutions) return 'recycled';
  return undefined;
}

/** `port.postMessage(message)` with the thread's original postMessage and Reflect.apply. */
export function pristinePost(port: MessagePort, message: unknown): void {
  apply(postMessage, port, [message]);
}
