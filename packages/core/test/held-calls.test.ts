import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { MAX_HELD_CALL_BYTES, approximateBytes, heldCallBytes, holdCall, releaseCall } from '../src/host/held-calls.js';

describe('approximateBytes', () => {
  it('counts a string by its length and a view by its whole buffer', () => {
    expect(approximateBytes(['x'.repeat(1000)], Infinity)).toBeGreaterThanOrEqual(1000);
    const buffer = new ArrayBuffer(1 << 20);
    expect(approximateBytes([new Uint8Array(buffer, 0, 4)], Infinity)).toBeGreaterThanOrEqual(1 << 20);
  });

  it('counts what Maps, Sets, objects and Errors hold', () => {
    const big = 'y'.repeat(5000);
    for (const value of [new Map([[1, big]]), new Set([big]), { a: { b: big } }, new Error(big)]) {
      expect(approximateBytes(value, Infinity)).toBeGreaterThanOrEqual(5000);
    }
  });

  it("counts them in a value of another realm too (a thread's message decoded by Node, for a host's test file run by Jest in a vm context)", () => {
    const values = vm.runInContext(
      `const big = 'y'.repeat(5000);
       [new Map([[1, big]]), new Set([big]), new Error(big), new ArrayBuffer(5000), new SharedArrayBuffer(5000)]`,
      vm.createContext({}),
    ) as unknown[];
    expect(values[0]).not.toBeInstanceOf(Map);
    for (const value of values) {
      expect(approximateBytes(value, Infinity)).toBeGreaterThanOrEqual(5000);
    }
  });

  it("counts an Error's stack and own properties, not only its message", () => {
    const big = 'y'.repeat(5000);
    expect(approximateBytes(Object.assign(new Error('m'), { data: big }), Infinity)).toBeGreaterThanOrEqual(5000);
    const error = new Error('m');
    error.stack = big;
    expect(approximateBytes(error, Infinity)).toBeGreaterThanOrEqual(5000);
  });

  it('stops counting once over the limit: the rest of a value is not walked', () => {
    const strings = Array.from({ length: 100 }, () => 'z'.repeat(1000));
    expect(approximateBytes(strings, 1000)).toBeGreaterThan(1000);
    expect(approximateBytes(strings, 1000)).toBeLessThan(10_000);
  });

  it('stops at the limit: a sparse array a billion long, a cycle, a value nested 200 000 deep', () => {
    expect(approximateBytes(new Array(1e9), 1000)).toBeGreaterThan(1000);
    const cyclic: Record<string, unknown> = { s: 'abc' };
    cyclic.self = cyclic;
    expect(approximateBytes(cyclic, Infinity)).toBeLessThan(100);
    let deep: unknown[] = [];
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(approximateBytes(deep, Infinity)).toBeGreaterThan(200_000);
  });
});

describe('holdCall', () => {
  it("refuses a plugin's calls past MAX_HELD_CALL_BYTES pending, until earlier ones are released", () => {
    const chunk = 'z'.repeat(MAX_HELD_CALL_BYTES / 4);
    const held = [1, 2, 3].map(() => holdCall('@t/held', 'platform.kv.put', [chunk]));
    expect(() => holdCall('@t/held', 'platform.kv.put', [chunk])).toThrow(expect.objectContaining({ code: 'QUEUE_FULL', details: expect.objectContaining({ reason: 'calls-held', pluginId: '@t/held' }) }));
    // Another plugin has an allowance of its own.
    releaseCall('@t/other', holdCall('@t/other', 'platform.kv.put', [chunk]));
    releaseCall('@t/held', held.pop()!);
    held.push(holdCall('@t/held', 'platform.kv.put', [chunk]));
    for (const bytes of held) releaseCall('@t/held', bytes);
    expect(heldCallBytes('@t/held')).toBe(0);
  });

  it('refuses one call whose arguments alone are over the limit with VALIDATION_ERROR naming it', () => {
    expect(() => holdCall('@t/one', 'platform.kv.put', ['q'.repeat(MAX_HELD_CALL_BYTES + 1)])).toThrow(/arguments of platform\.kv\.put are over 64 MiB/);
    expect(heldCallBytes('@t/one')).toBe(0);
  });
});
