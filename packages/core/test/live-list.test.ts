import { describe, expect, it } from 'vitest';
import { LiveList, LiveMap } from '../src/host/live-list.js';

describe('LiveList', () => {
  it('keeps what is added in order, takes out any entry once, and leaves a removed entry pointing at nothing', () => {
    const list = new LiveList<string>();
    const a = list.add('a');
    const b = list.add('b');
    const c = list.add('c');
    expect(list.values()).toEqual(['a', 'b', 'c']);
    expect(list.remove(b)).toBe(true);
    expect(list.remove(b)).toBe(false);
    expect([...list]).toEqual(['a', 'c']);
    expect(list.size).toBe(2);
    // Nothing dead points at anything live (the reason this is not a Set: live-list.ts).
    expect([b.prev, b.next, b.list]).toEqual([undefined, undefined, undefined]);
    expect(list.remove(a)).toBe(true);
    expect(list.first?.value).toBe('c');
    expect(list.remove(c)).toBe(true);
    expect(list.first).toBeUndefined();
    expect(list.size).toBe(0);
    list.add('d');
    expect(list.values()).toEqual(['d']);
  });

  it('refuses an entry of another list, and may be removed from while its values are walked', () => {
    const one = new LiveList<number>();
    const other = new LiveList<number>();
    const entry = other.add(1);
    one.add(1);
    expect(one.remove(entry)).toBe(false);
    expect(other.size).toBe(1);
    const entries = [2, 3, 4].map((n) => one.add(n));
    const seen: number[] = [];
    for (const value of one) {
      seen.push(value);
      for (const e of entries) one.remove(e);
    }
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(one.values()).toEqual([1]);
  });

  it('LiveMap: a Map of string keys in insertion order, a key set again keeping its place, keys that are no names included', () => {
    const map = new LiveMap<number>();
    for (const key of ['b', '10', '__proto__', 'constructor', '2', 'a']) map.set(key, key.length);
    // Not an object's order (integer-like keys first): the order they came in, as a Map keeps it.
    expect(map.keys()).toEqual(['b', '10', '__proto__', 'constructor', '2', 'a']);
    expect(map.get('__proto__')).toBe(9);
    expect(map.get('toString')).toBeUndefined();
    expect(map.has('constructor')).toBe(true);
    map.set('b', 99);
    expect(map.entries()[0]).toEqual(['b', 99]);
    expect(map.delete('10')).toBe(true);
    expect(map.delete('10')).toBe(false);
    expect(map.size).toBe(5);
    map.set('10', 1);
    expect(map.keys().at(-1)).toBe('10');
    const seen: string[] = [];
    for (const [key] of map) {
      seen.push(key);
      map.delete(key);
    }
    expect(seen).toEqual(['b', '__proto__', 'constructor', '2', 'a', '10']);
    expect(map.size).toBe(0);
    map.set('x', 1);
    map.clear();
    expect([map.size, map.values()]).toEqual([0, []]);
  });
});
