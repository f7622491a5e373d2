import v8 from 'node:v8';
import { describe, expect, it } from 'vitest';
import { encodedAtLeast } from '../src/shared/encoded-size.js';

describe('encodedAtLeast', () => {
  const values: Array<[string, unknown]> = [
    ['a one-byte string', 'x'.repeat(10_000)],
    ['a two-byte string', 'ж'.repeat(10_000)],
    ['a Buffer', Buffer.alloc(5000)],
    ['a view on part of a larger buffer', new Uint8Array(new ArrayBuffer(8000), 100, 300)],
    ['an ArrayBuffer', new ArrayBuffer(4096)],
    ['an object of strings and bytes', { text: 'a'.repeat(3000), bytes: new Uint16Array(700), n: 1, nested: { deep: 'b'.repeat(9000) } }],
    ['an array of strings', Array.from({ length: 1000 }, (_, i) => `item ${i}`)],
    ['an object with many keys', Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`key${i}`, 'v'.repeat(i % 50)]))],
    ['a Map (not looked into)', new Map([['k', 'v'.repeat(1000)]])],
    ['numbers', [1, 2, 3]],
    ['null', null],
    ['an empty object', {}],
    // v8 writes own properties only: a large inherited string would otherwise refuse a small body.
    ['an object inheriting a large string', Object.create({ inherited: 'x'.repeat(100_000) })],
  ];

  it.each(values)('is never more than v8 writes: %s', (_, value) => {
    expect(encodedAtLeast(value)).toBeLessThanOrEqual(v8.serialize(value).length);
  });

  it('counts a large string, and large strings one level down, near their size', () => {
    expect(encodedAtLeast('x'.repeat(1_000_000))).toBe(1_000_000);
    expect(encodedAtLeast({ a: 'x'.repeat(600_000), b: ['y'.repeat(600_000)], c: new Uint8Array(400_000) })).toBe(1 + 600_000 + 1 + 0 + 1 + 400_000);
    expect(encodedAtLeast(['x'.repeat(500_000), Buffer.alloc(500_000)])).toBe(1_000_000);
    expect(encodedAtLeast(new ArrayBuffer(1_000_000))).toBe(1_000_000);
  });

  it('reads only the first entries of a large array or object: its cost does not grow with the body', () => {
    const readsOf = (target: object) => {
      let reads = 0;
      const counted = new Proxy(target, { get: (t, key, receiver) => (typeof key === 'string' && key !== 'length' && reads++, Reflect.get(t, key, receiver)) });
      encodedAtLeast(counted);
      return reads;
    };
    expect(readsOf(Array.from({ length: 10_000 }, () => 'x'))).toBeLessThan(1000);
    expect(readsOf(Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, 'x'])))).toBeLessThan(1000);
  });

  it('is 0, not a throw, for a getter or proxy that throws (encoding then says what it makes of it)', () => {
    const getter = Object.defineProperty({}, 'boom', { enumerable: true, get: () => { throw new Error('no'); } });
    const proxy = new Proxy({}, { ownKeys: () => { throw new Error('no'); } });
    expect(encodedAtLeast(getter)).toBe(0);
    expect(encodedAtLeast(proxy)).toBe(0);
  });
});
