// Node's built-in by getBuiltinModule, as in wire-clone.ts: no ES facade built at start-up.
const { types } = process.getBuiltinModule('node:util');

/**
 * A typed array or DataView carries its whole buffer across a boundary, not only its own bytes:
 * structured clone (postMessage, structuredClone) copies the buffer entire, and v8's deserialiser
 * makes each view a window on the message it reads. So `Buffer.from('hi')` handed to a plugin
 * would show it the rest of Node's 8 KiB Buffer pool (other code's data), and a view decoded from
 * a queue message the connection's read buffer (other executions' tasks). Every backend hands a
 * view over with its own bytes only, in a buffer of their length.
 */

/** The constructors a view can be rebuilt with, taken before any plugin code can run. */
const VIEW_TYPES = [Uint8Array, Int8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array] as const;
const sliceBuffer = ArrayBuffer.prototype.slice;

/** Whether `view` sees only part of its buffer (a shared buffer is left shared: the host chose it). */
function isLoose(view: ArrayBufferView): boolean {
  return !types.isSharedArrayBuffer(view.buffer) && (view.byteOffset !== 0 || view.byteLength !== view.buffer.byteLength);
}

/** A view of the same type (a Buffer becomes the Uint8Array structured clone makes of it) over a copy of its own bytes only. */
export function tightCopy(view: ArrayBufferView): ArrayBufferView {
  const bytes = sliceBuffer.call(view.buffer, view.byteOffset, view.byteOffset + view.byteLength) as ArrayBuffer;
  if (types.isDataView(view)) return new DataView(bytes);
  const Type = VIEW_TYPES.find((type) => view instanceof type) ?? Uint8Array;
  return new Type(bytes);
}

/**
 * `value` with every view in it that sees more than its own bytes replaced by a tight copy
 * (shared references stay shared). Only for a fresh copy: structured clone's or a message's,
 * made of data properties, where reading and writing keys runs no code of anyone's. A loop, not
 * recursion: nesting thousands deep costs its size and no stack.
 */
export function tightenViews<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  if (ArrayBuffer.isView(value)) return (isLoose(value) ? tightCopy(value) : value) as T;
  // Most values are trees: walked without remembering what was visited, which costs a third of
  // the walk. One that takes too many visits (a cycle, much sharing) is walked again remembering.
  const walk = new ViewWalk(WALK_UNREMEMBERED);
  if (!walk.run(value)) new ViewWalk(Infinity, walk).run(value);
  return value;
}

/** Visits a walk that does not remember what it visited makes before it gives up. */
const WALK_UNREMEMBERED = 20_000;

/** One walk of tightenViews: what is left to visit, what was visited (if remembered), the copy made of each loose view. */
class ViewWalk {
  readonly #pending: object[] = [];
  readonly #seen: Set<object> | undefined;
  #budget: number;
  #copies: Map<ArrayBufferView, ArrayBufferView> | undefined;

  /** `budget` visits, remembered if it is not finite; the copies `before` made are kept (one view met twice stays one). */
  constructor(budget: number, before?: ViewWalk) {
    this.#budget = budget;
    this.#seen = Number.isFinite(budget) ? undefined : new Set();
    this.#copies = before && before.#copies;
  }

  /** Walks all of `value`; false if it ran out of visits first. */
  run(value: object): boolean {
    this.#pending.push(value);
    while (this.#pending.length > 0) {
      if (this.#budget-- <= 0) return false;
      this.#visit(this.#pending.pop()!);
    }
    return true;
  }

  /** Replaces the loose views among `container`'s children (a Map's keys and values, a Set's items, own keys) and queues the other objects. */
  #visit(container: object): void {
    if (this.#seen) {
      if (this.#seen.has(container)) return;
      this.#seen.add(container);
    }
    if (container instanceof Map) return this.#visitMap(container);
    if (container instanceof Set) return this.#visitSet(container);
    const record = container as Record<string, unknown>;
    const keys = Array.isArray(container) ? undefined : Object.keys(record);
    const length = keys ? keys.length : (container as unknown[]).length;
    for (let i = 0; i < length; i++) {
      const key = keys ? keys[i]! : i;
      const item = record[key];
      if (typeof item !== 'object' || item === null) continue;
      if (ArrayBuffer.isView(item)) {
        const copy = this.#tight(item);
        if (copy !== item) record[key] = copy;
      } else this.#pending.push(item);
    }
  }

  #visitMap(map: Map<unknown, unknown>): void {
    const entries = [...map].map(([key, item]) => [this.#child(key), this.#child(item)] as const);
    // A key replaced would go to the end: the map is refilled in order instead.
    if (entries.some(([key]) => !map.has(key))) map.clear();
    for (const [key, item] of entries) map.set(key, item);
  }

  #visitSet(set: Set<unknown>): void {
    const items = [...set].map((item) => this.#child(item));
    if (items.every((item) => set.has(item))) return;
    set.clear();
    for (const item of items) set.add(item);
  }

  /** `item`, queued if it is an object, or its tight copy if it is a loose view. */
  #child(item: unknown): unknown {
    if (typeof item !== 'object' || item === null) return item;
    if (ArrayBuffer.isView(item)) return this.#tight(item);
    this.#pending.push(item);
    return item;
  }

  #tight(view: ArrayBufferView): ArrayBufferView {
    if (!isLoose(view)) return view;
    this.#copies ??= new Map();
    let copy = this.#copies.get(view);
    if (!copy) this.#copies.set(view, (copy = tightCopy(view)));
    return copy;
  }
}
