// How long a push's data would be written as JSON, counted without writing it (the 64 MiB cap on a push).
import { describe, expect, it } from 'vitest';
import { jsonLongerThan } from '../src/push-size.js';

describe('jsonLongerThan', () => {
  it('counts a typed array as JSON writes it (an object of its indices, a few characters a byte), not by its bytes', () => {
    // 300 bytes: {"0":0,"1":0,…} is some 2,400 characters.
    expect(JSON.stringify(new Uint8Array(300)).length).toBeGreaterThan(1000);
    expect(jsonLongerThan(new Uint8Array(300), 1000)).toBe(true);
  });

  it('counts a cycle once and leaves it for JSON to refuse, rather than calling it too long', () => {
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic.self = cyclic;
    expect(jsonLongerThan(cyclic, 1000)).toBe(false);
    expect(() => JSON.stringify(cyclic)).toThrow(/circular/);
  });

  it('finds a sparse array longer than the limit too long without reading its slots', () => {
    // A million slots, and a few thousand: any length past the limit is decided before a slot is read.
    for (const length of [1_000_000, 5000]) {
      let reads = 0;
      const sparse = new Proxy(new Array(length), {
        get(target, key, receiver) {
          if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
          return Reflect.get(target, key, receiver);
        },
      });
      expect(jsonLongerThan(sparse, 1000), String(length)).toBe(true);
      // Before: each of its million empty slots was read and stacked (a billion-long one held the host).
      expect(reads, String(length)).toBe(0);
    }
  });

  it('counts an object met under many keys at each of them, as JSON writes it there', () => {
    const shared = { text: 'x'.repeat(100) };
    const many = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, shared]));
    expect(JSON.stringify(many).length).toBeGreaterThan(2000);
    expect(jsonLongerThan(many, 1000)).toBe(true);
    expect(jsonLongerThan({ a: shared, b: shared }, 1000)).toBe(false);
  });

  it("counts strings by their length and keys by theirs", () => {
    expect(jsonLongerThan('x'.repeat(2000), 1000)).toBe(true);
    expect(jsonLongerThan({ ['k'.repeat(2000)]: 1 }, 1000)).toBe(true);
    expect(jsonLongerThan({ k: 'x'.repeat(900) }, 1000)).toBe(false);
  });

  it('goes on counting past a total equal to the limit: only one over it is too long', () => {
    // ["12345","1"] counts 14: its brackets and a slot each (4), then "1" (3) and "12345" (7).
    expect(jsonLongerThan(['12345', '1'], 7)).toBe(true);
    expect(jsonLongerThan(['12345', '1'], 13)).toBe(true);
    expect(jsonLongerThan(['12345', '1'], 14)).toBe(false);
  });
});
