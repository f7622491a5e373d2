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
    let reads = 0;
    const sparse = new Proxy(new Array(1_000_000), {
      get(target, key, receiver) {
        if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
        return Reflect.get(target, key, receiver);
      },
    });
    expect(jsonLongerThan(sparse, 1000)).toBe(true);
    // Before: each of its million empty slots was read and stacked (a billion-long one held the host).
    expect(reads).toBe(0);
  });
});
