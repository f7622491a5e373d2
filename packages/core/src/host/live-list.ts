/** A place in a LiveList: what `add` returns and `remove` takes. */
export interface LiveEntry<T> {
  readonly value: T;
  /** @internal */ prev: LiveEntry<T> | undefined;
  /** @internal */ next: LiveEntry<T> | undefined;
  /** @internal */ list: LiveList<T> | undefined;
}

/**
 * An insertion-ordered collection of what is live now (running executions, their time limits),
 * added to and removed from once per execution. Not a Set: V8 rehashes a Set or Map that much
 * churn goes through into a new table and leaves the old one pointing at it, so once one of
 * those tables has aged into the old generation, every later table, and everything their entries
 * reach, survives the young-generation collections until a full one. Measured: a host's CPU per
 * execution went from ~3 to ~13 µs, most of it in the garbage collector (docs/benchmarks.md).
 * Each entry here is unlinked when removed, so nothing dead points at anything live.
 */
export class LiveList<T> implements Iterable<T> {
  #first: LiveEntry<T> | undefined;
  #last: LiveEntry<T> | undefined;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** The entry added first of those still here. */
  get first(): LiveEntry<T> | undefined {
    return this.#first;
  }

  add(value: T): LiveEntry<T> {
    const entry: LiveEntry<T> = { value, prev: this.#last, next: undefined, list: this };
    if (this.#last) this.#last.next = entry;
    else this.#first = entry;
    this.#last = entry;
    this.#size++;
    return entry;
  }

  /** Take `entry` out; false if it is not in this list (removed already). */
  remove(entry: LiveEntry<T>): boolean {
    if (entry.list !== this) return false;
    const { prev, next } = entry;
    if (prev) prev.next = next;
    else this.#first = next;
    if (next) next.prev = prev;
    else this.#last = prev;
    entry.prev = entry.next = entry.list = undefined;
    this.#size--;
    return true;
  }

  /** What is here now, in the order added: a copy, so that it may be removed from meanwhile. */
  values(): T[] {
    const values: T[] = [];
    for (let entry = this.#first; entry; entry = entry.next) values.push(entry.value);
    return values;
  }

  [Symbol.iterator](): Iterator<T> {
    return this.values()[Symbol.iterator]();
  }
}

interface LiveMapEntry<V> {
  value: V;
  readonly place: LiveEntry<string>;
}

/**
 * A Map of string keys for what comes and goes once per execution (executions by id, requests by
 * token): the same API where this project uses it, the same insertion order, none of a Map's
 * rehashed tables (LiveList). Keys are held in an object without a prototype, put in dictionary
 * mode at once, whose tables point at nothing when replaced.
 */
export class LiveMap<V> implements Iterable<[string, V]> {
  readonly #byKey: Record<string, LiveMapEntry<V>> = dictionary();
  readonly #order = new LiveList<string>();

  get size(): number {
    return this.#order.size;
  }

  get(key: string): V | undefined {
    return this.#byKey[key]?.value;
  }

  has(key: string): boolean {
    return this.#byKey[key] !== undefined;
  }

  /** A key already here keeps its place, as in a Map. */
  set(key: string, value: V): this {
    const entry = this.#byKey[key];
    if (entry) entry.value = value;
    else this.#byKey[key] = { value, place: this.#order.add(key) };
    return this;
  }

  delete(key: string): boolean {
    const entry = this.#byKey[key];
    if (!entry) return false;
    delete this.#byKey[key];
    this.#order.remove(entry.place);
    return true;
  }

  clear(): void {
    for (const key of this.#order.values()) this.delete(key);
  }

  /** The keys now, in the order added: a copy (so are values() and entries()), free to change the map meanwhile. */
  keys(): string[] {
    return this.#order.values();
  }

  values(): V[] {
    return this.#order.values().map((key) => this.#byKey[key]!.value);
  }

  entries(): Array<[string, V]> {
    return this.#order.values().map((key) => [key, this.#byKey[key]!.value]);
  }

  [Symbol.iterator](): Iterator<[string, V]> {
    return this.entries()[Symbol.iterator]();
  }
}

/** An object without a prototype, in dictionary mode from the start (deleting a property other than the last one added puts it there). */
function dictionary<V>(): Record<string, V> {
  const object = Object.create(null) as Record<string, unknown>;
  object.a = 0;
  object.b = 0;
  delete object.a;
  delete object.b;
  return object as Record<string, V>;
}
