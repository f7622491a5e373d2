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
