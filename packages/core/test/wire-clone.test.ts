import { createSecretKey, webcrypto } from 'node:crypto';
import { createHistogram } from 'node:perf_hooks';
import { serialize } from 'node:v8';
import { ValidationError } from '@kb-labs/plugin-execution-core';
import { cloneForWire, unserializableError } from '@kb-labs/plugin-execution-core/backend-kit';
import { describe, expect, it } from 'vitest';

/** What structuredClone makes of a value, or the fact that it refuses it. */
function reference(value: unknown): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: structuredClone(value) };
  } catch {
    return { ok: false };
  }
}

const nullProto = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1 });
const withUndefined = { a: undefined, b: [undefined, null] };
const sparse = [1, , 3];
const extraProp = Object.assign([1, 2], { extra: true });
const jsonProto = JSON.parse('{"__proto__": {"polluted": true}, "x": 1}') as unknown;
const cycle: Record<string, unknown> = { name: 'loop' };
cycle.self = cycle;
const deep = { a: { b: { c: { d: { e: { f: 1 } } } } } };
const wide = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`k${i}`, i]));
const withGetter = Object.defineProperty({}, 'computed', { get: () => 42, enumerable: true });
const throwingGetter = Object.defineProperty({}, 'boom', {
  get: () => {
    throw new Error('getter threw');
  },
  enumerable: true,
});

describe('cloneForWire', () => {
  it.each([
    ['a plain object', { args: ['--verbose'], n: 1, ok: true, none: null }],
    ['-0 and NaN', { z: -0, n: Number.NaN, inf: Number.POSITIVE_INFINITY }],
    ['a null-prototype object', nullProto],
    ['undefined members', withUndefined],
    ['a sparse array', sparse],
    ['an array with an extra property', extraProp],
    ['an own "__proto__" key from JSON.parse', jsonProto],
    ['a cycle', cycle],
    ['deep nesting', deep],
    ['a wide object', wide],
    ['a Date, a Map, a BigInt', { when: new Date(0), map: new Map([[1, 2]]), big: 10n }],
    ['an enumerable getter', withGetter],
  ])('gives what structuredClone gives for %s', (_name, value) => {
    const expected = reference(value);
    expect(expected.ok).toBe(true);
    const copy = cloneForWire(value, 'test value');
    expect(copy).toEqual((expected as { value: unknown }).value);
    expect(copy).not.toBe(value);
    expect(Object.getPrototypeOf(copy)).toBe(Object.getPrototypeOf((expected as { value: unknown }).value));
    expect(Object.keys(copy as object)).toEqual(Object.keys((expected as { value: object }).value));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it.each([
    ['a function member', { fn: () => 1 }],
    ['a symbol member', { s: Symbol('x') }],
    ['a proxy', new Proxy({ a: 1 }, {})],
    ['a getter that throws', throwingGetter],
    // Not objects, so not for the fast copy: a handler's whole result can be one.
    ['a symbol, whole', Symbol('x')],
    ['a function, whole', () => 1],
  ])('refuses %s with a ValidationError, as structuredClone refuses it', (_name, value) => {
    expect(reference(value).ok).toBe(false);
    expect(() => cloneForWire(value, 'test value')).toThrow(ValidationError);
    expect(() => cloneForWire(value, 'test value')).toThrow(/test value cannot be sent/);
  });

  it('keeps its bookkeeping per call when a getter clones something mid-copy', () => {
    const shared = { x: 1 };
    const value = {
      first: shared,
      get middle() {
        return cloneForWire({ other: { y: 2 } }, 'nested').other.y;
      },
      last: shared,
    };
    const copy = cloneForWire(value, 'v');
    expect(copy.middle).toBe(2);
    expect(copy.last).toBe(copy.first);
  });

  it('copies nested objects, keeping shared references shared as structuredClone does', () => {
    const inner = { x: 1 };
    const copy = cloneForWire({ inner, list: [inner] }, 'v');
    expect(copy.inner).not.toBe(inner);
    expect(copy.list[0]).toBe(copy.inner);
    const separate = cloneForWire({ a: { x: 1 }, b: { x: 1 } }, 'v');
    expect(separate.a).not.toBe(separate.b);
  });
});

// The subprocess and queue backends send with v8's serialiser, which refuses shared memory and
// (on Node 20; Node 22 takes a Blob as a plain object) Blobs that structured clone within a
// process takes: the error names where they are, as it does for a function.
const refusedByV8: Array<[string, unknown, string]> = [['a SharedArrayBuffer', { a: [1, { s: new SharedArrayBuffer(4) }] }, 'input.a[1].s']];
if (v8RefusesBlobs()) refusedByV8.push(['a Blob', { list: [0, new Blob(['x'])] }, 'input.list[1]']);
// Host objects v8's serialiser refuses by its own message ("Unserializable host object: …"), which
// names no path (before: none said, or a key the object does not have, `.constructor`).
// Each where this Node's v8 refuses it as a host object (Node 22 writes a CryptoKey as a plain
// object, and refuses a Histogram for the function it holds, which is named as a function is).
const hostObjects: Array<[string, unknown, string]> = [
  ['a KeyObject', { keys: { secret: createSecretKey(Buffer.from('k')) } }, 'input.keys.secret'],
  ['a perf_hooks Histogram', { v: [createHistogram()] }, 'input.v[0]'],
  ['a CryptoKey', { key: await webcrypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, true, ['sign']) }, 'input.key'],
];
refusedByV8.push(...hostObjects.filter(([, value]) => v8RefusesAsHostObject(value)));

function v8RefusesAsHostObject(value: unknown): boolean {
  try {
    serialize(value);
    return false;
  } catch (error) {
    return /host object/i.test(String((error as Error).message));
  }
}

function refusedByClone(value: unknown): boolean {
  try {
    structuredClone(value);
    return false;
  } catch {
    return true;
  }
}

function v8RefusesBlobs(): boolean {
  try {
    serialize(new Blob(['x']));
    return false;
  } catch {
    return true;
  }
}

describe('unserializableError, for what only a process boundary refuses', () => {
  it.each(refusedByV8)('names the path of %s', async (_, value, path) => {
    const v8 = await import('node:v8');
    let thrown: unknown;
    try {
      v8.serialize(value);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeDefined();
    const error = unserializableError('input', thrown, value);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.details).toMatchObject({ what: 'input', reason: 'not-serializable', path });
    expect(error.message).toContain(`(at ${path})`);
  });

  it("names the SharedArrayBuffer v8's serialiser refused, not a view of shared memory beside it, which it copies", async () => {
    const v8 = await import('node:v8');
    const scratch = new SharedArrayBuffer(8);
    const value = { counters: new Int32Array(scratch, 4, 1), scratch };
    expect(() => v8.serialize({ counters: value.counters })).not.toThrow();
    let thrown: unknown;
    try {
      v8.serialize(value);
    } catch (error) {
      thrown = error;
    }
    expect(unserializableError('input', thrown, value).details).toMatchObject({ reason: 'not-serializable', path: 'input.scratch' });
  });

  // Structured clone refuses these with a message that names nothing: "Cannot clone object of
  // unsupported type." (a URL or Headers from Node 22 on), "Object that needs transfer was found …".
  const platformObjects: Array<[string, () => unknown, string]> = [['a MessagePort', () => ({ list: [1, { port: new MessageChannel().port1 }] }), 'input.list[1].port']];
  if (refusedByClone(new URL('http://x'))) platformObjects.push(['a URL', () => ({ a: { u: new URL('http://x') } }), 'input.a.u']);
  if (typeof Headers === 'function' && refusedByClone(new Headers())) platformObjects.push(['a Headers', () => ({ h: [new Headers()] }), 'input.h[0]']);
  it.each(platformObjects)('names the path of %s, which structured clone refuses without naming it', (_, make, path) => {
    const value = make();
    try {
      expect(() => cloneForWire(value, 'input')).toThrow(expect.objectContaining({ details: expect.objectContaining({ reason: 'not-serializable', path }) }));
    } finally {
      ((value as { list?: [number, { port?: { close(): void } }] }).list?.[1].port)?.close();
    }
  });

  it('names a refused value that comes after large typed arrays (their numbers are not walked: Object.keys of 20 million indices took seconds)', () => {
    const value = { samples: new Float64Array(20_000), bytes: new Uint8Array(30_000), data: new DataView(new ArrayBuffer(50_000)), onProgress() {} };
    expect(() => cloneForWire(value, 'input')).toThrow(expect.objectContaining({ details: expect.objectContaining({ reason: 'not-serializable', path: 'input.onProgress' }) }));
  });

  it.each(['stack', 'message', 'name'])("names an Error's own %s whose getter throws (not enumerable, still read by the clone)", (key) => {
    const error = new Error('d');
    Object.defineProperty(error, key, {
      get() {
        throw new Error('getter');
      },
    });
    expect(() => cloneForWire({ list: [error] }, 'result')).toThrow(expect.objectContaining({ details: expect.objectContaining({ reason: 'not-serializable', path: `result.list[0].${key}` }) }));
  });

  it("gives node:v8's refusal (a plain Error) as the DataCloneError structured clone gives", () => {
    let thrown: unknown;
    try {
      serialize({ f: () => 1 });
    } catch (error) {
      thrown = error;
    }
    expect((thrown as Error).name).toBe('Error');
    const cause = unserializableError('result', thrown, { f: () => 1 }).cause as DOMException;
    expect(cause).toBeInstanceOf(DOMException);
    expect(cause.name).toBe('DataCloneError');
    expect((thrown as Error).message).toBe('() => 1 could not be cloned.');
    // The kind of value, not its text: a function's text is its source.
    expect(cause.message).toBe('A function could not be cloned.');
  });

  it('names where a detached ArrayBuffer (or a view of one) is', () => {
    const buffer = new ArrayBuffer(8);
    const view = new Uint8Array(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    for (const [value, at] of [[{ a: { b: [1, buffer] } }, 'input.a.b[1]'], [{ view }, 'input.view']] as const) {
      const error = (() => {
        try {
          cloneForWire(value, 'input');
        } catch (e) {
          return e as ValidationError;
        }
        throw new Error('expected a refusal');
      })();
      expect(error.details).toMatchObject({ reason: 'not-serializable', path: at });
    }
  });

  it('names a refused symbol or object by its kind, and never quotes a function, whichever clone refused it', () => {
    const secret = () => 'the host secret';
    const generator = (function* steps() {})();
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const kinds = [
      [{ s: Symbol('x') }, 'A symbol'],
      [{ w: new WeakMap() }, '#<WeakMap>'],
      [{ f: secret }, 'A function'],
      [{ m: { save() { return 'the host secret'; } }.save }, 'A function'],
      [{ g: generator }, '[object Generator]'],
      [{ p: revoked.proxy }, 'A value'],
    ] as const;
    for (const [value, kind] of kinds) {
      const error = unserializableError('platform.db.get result', cloneError(value), value);
      expect(error.message).toMatch(new RegExp(`^platform\\.db\\.get result cannot be sent across the execution boundary: ${kind.replace(/[.*+?^${}()|[\]\\<>#]/g, '\\$&')} could not be cloned\\. \\(at result\\.\\w\\)$`));
      expect(JSON.stringify([error.message, (error.cause as Error).message])).not.toContain('host secret');
    }
  });

  it('names where an iterator is (an array\'s, a map\'s, a string\'s, an iterator helper\'s): structured clone names it only "#<Object>"', () => {
    // Iterator helpers from Node 22 on.
    const helpers = typeof (Object.getPrototypeOf(Object.getPrototypeOf([].values())) as { map?: unknown }).map === 'function';
    const iterators: unknown[] = [[1, 2].values(), new Map([[1, 2]]).keys(), 'ab'[Symbol.iterator](), 'ab'.matchAll(/a/g), ...(helpers ? [([1, 2].values() as unknown as { map(f: (x: number) => number): unknown }).map((x) => x * 2)] : [])];
    for (const iterator of iterators) {
      const value = { items: [1, { lazy: iterator }] };
      const error = unserializableError('handler result', cloneError(value), value);
      expect(error.details).toMatchObject({ reason: 'not-serializable', path: 'result.items[1].lazy' });
    }
  });

  it.each([
    ['a Proxy', () => new Proxy({ fine: 1 }, {})],
    ['a Promise', () => Promise.resolve(1)],
    ['a WeakMap', () => new WeakMap()],
    ['a WeakSet', () => new WeakSet()],
    ['a WeakRef', () => new WeakRef({})],
    ['a generator', () => (function* steps() {})()],
  ])('names where %s is, deep in a value structured clone refuses for it', (_name, make) => {
    const value = { when: new Date(0), items: [1, { held: make() }] };
    expect(() => cloneForWire(value, 'handler result')).toThrow(expect.objectContaining({ details: { what: 'handler result', reason: 'not-serializable', path: 'result.items[1].held' } }));
  });

  it('names the first refused value in key order, the one structured clone stopped at', () => {
    const value = { when: new Date(0), first: () => 1, list: [1, Symbol('second')], last: () => 3 };
    expect(() => cloneForWire(value, 'input')).toThrow(expect.objectContaining({ details: expect.objectContaining({ path: 'input.first' }) }));
  });

  it('does not blame shared memory that was fine when a function is what was refused', () => {
    const value = { s: new SharedArrayBuffer(2), f: () => 1 };
    let thrown: unknown;
    try {
      structuredClone(value);
    } catch (error) {
      thrown = error;
    }
    expect(unserializableError('input', thrown, value).details).toMatchObject({ path: 'input.f' });
  });
});

function cloneError(value: unknown): unknown {
  try {
    structuredClone(value);
  } catch (error) {
    return error;
  }
  throw new Error('expected structuredClone to refuse the value');
}
