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
const VIEW_TYPES: ReadonlyArray<new (buffer: ArrayBuffer) => ArrayBufferView> = [
  Uint8Array,
  Int8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  // Node 24 and later (a global there; structured clone keeps it).
  ...optionalViewType('Float16Array'),
];
const sliceBuffer = ArrayBuffer.prototype.slice;
/**
 * A typed array's type by its name, read from the array itself (`%TypedArray%.prototype[@@toStringTag]`),
 * not by instanceof: a view made in another realm (a vm context; a host's test file under Jest,
 * whose structuredClone and messages are Node's realm) is an instance of none of VIEW_TYPES.
 */
const typedArrayName = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), Symbol.toStringTag)!.get!;
const VIEW_TYPE_NAMES: ReadonlyArray<string> = VIEW_TYPES.map((type) => type.name);

function optionalViewType(name: string): Array<new (buffer: ArrayBuffer) => ArrayBufferView> {
  const Type = (globalThis as Record<string, unknown>)[name];
  return typeof Type === 'function' ? [Type as new (buffer: ArrayBuffer) => ArrayBufferView] : [];
}

/** Whether `view` sees only part of its buffer (a shared buffer is left shared: the host chose it). */
function isLoose(view: ArrayBufferView): boolean {
  return !types.isSharedArrayBuffer(view.buffer) && (view.byteOffset !== 0 || view.byteLength !== view.buffer.byteLength);
}

/** A view of the same type (a Buffer becomes the Uint8Array structured clone makes of it) over a copy of its own bytes only. */
export function tightCopy(view: ArrayBufferView): ArrayBufferView {
  const bytes = sliceBuffer.call(view.buffer, view.byteOffset, view.byteOffset + view.byteLength) as ArrayBuffer;
  if (types.isDataView(view)) return new DataView(bytes);
  const Type = VIEW_TYPES[VIEW_TYPE_NAMES.indexOf(typedArrayName.call(view) as string)] ?? Uint8Array;
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
  // the walk. One that takes too much of it (a cycle, much sharing: an array met a thousand
  // times is read a thousand times) is walked again remembering, each object once.
  const walk = new ViewWalk(WALK_UNREMEMBERED);
  if (!walk.run(value)) new ViewWalk(Infinity, walk).run(value);
  return value;
}

/** Arrays up to this long are walked by their keys (what structured clone keeps beside the indices included). */
const SMALL_ARRAY = 256;
/** Indices walked by number, at most, in one walk (~10 ms). */
const INDEX_BUDGET = 4_000_000;
/** Objects and properties a walk that does not remember what it visited reads before it gives up. */
const WALK_UNREMEMBERED = 50_000;

/** One walk of tightenViews: what is left to visit, what was visited (if remembered), the copy made of each loose view. */
class ViewWalk {
  readonly #pending: object[] = [];
  readonly #seen: Set<object> | undefined;
  #budget: number;
  /**
   * Indices left to walk by number: an array's length says nothing of what it holds (a sparse
   * one serialises in a few bytes), so past this the arrays' keys are walked, which cost what
   * they hold.
   */
  #indexBudget = INDEX_BUDGET;
  #copies: Map<ArrayBufferView, ArrayBufferView> | undefined;

  /** `budget` objects and properties read, remembered if it is not finite; the copies `before` made are kept (one view met twice stays one). */
  constructor(budget: number, before?: ViewWalk) {
    this.#budget = budget;
    this.#seen = Number.isFinite(budget) ? undefined : new Set();
    this.#copies = before && before.#copies;
  }

  /** Walks all of `value`; false if it ran out of budget first. */
  run(value: object): boolean {
    this.#pending.push(value);
    while (this.#pending.length > 0) {
      if (this.#budget <= 0) return false;
      this.#visit(this.#pending.pop()!);
    }
    return true;
  }

  /** Replaces the loose views among `container`'s children (a Map's keys and values, a Set's items, own properties) and queues the other objects. */
  #visit(container: object): void {
    if (this.#seen) {
      if (this.#seen.has(container)) return;
      this.#seen.add(container);
    }
    this.#budget--;
    // A plain object (most of a value) costs no more than its prototype's look. A Map or Set is
    // told by its brand, not instanceof: one decoded by Node for a host run in a vm context (a
    // test file under Jest) is of Node's realm, and its views were left loose.
    const proto = Object.getPrototypeOf(container);
    const plain = proto === Object.prototype || proto === null;
    if (!plain && types.isMap(container)) {
      this.#budget -= 2 * container.size;
      return this.#visitMap(container);
    }
    if (!plain && types.isSet(container)) {
      this.#budget -= container.size;
      return this.#visitSet(container);
    }
    if (Array.isArray(container) && container.length > SMALL_ARRAY && container.length <= this.#indexBudget) {
      // A large array by its indices (its keys as strings would cost several times the clone).
      this.#indexBudget -= container.length;
      this.#budget -= container.length;
      for (let i = 0; i < container.length; i++) this.#property(container as unknown as Record<number, unknown>, i);
      return;
    }
    // A plain object's keys are all enumerable in a clone; an Error's `cause` is not, so other
    // objects give every own name. A small array's keys include what structured clone keeps
    // beside its indices; a sparse one (length 2**32 - 1, nothing in it) has next to none.
    const keys = plain || Array.isArray(container) ? Object.keys(container) : Object.getOwnPropertyNames(container);
    this.#budget -= keys.length;
    for (let i = 0; i < keys.length; i++) this.#property(container as Record<string, unknown>, keys[i]!);
  }

  /** `container[key]`: a loose view replaced by its copy, another object queued. */
  #property(container: Record<string | number, unknown>, key: string | number): void {
    const item = container[key];
    if (typeof item !== 'object' || item === null) return;
    if (ArrayBuffer.isView(item)) {
      const copy = this.#tight(item);
      if (copy !== item) container[key] = copy;
    } else this.#pending.push(item);
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
