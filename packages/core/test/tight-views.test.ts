import v8 from 'node:v8';
import vm from 'node:vm';
import { cloneForWire, deserializeLikeClone, tightenViews } from '@kb-labs/plugin-execution-core/backend-kit';
import { describe, expect, it } from 'vitest';

/** Bytes `text` sits in the middle of: a view on them sees `text`, its buffer the rest too. */
function windowOn(text: string): Uint8Array {
  const all = new TextEncoder().encode(`SECRET-BEFORE|${text}|SECRET-AFTER`);
  return all.subarray(14, 14 + text.length);
}

/** Every view's buffer holds its own bytes and nothing else. */
function expectTight(view: ArrayBufferView, text: string): void {
  expect(view.byteOffset).toBe(0);
  expect(view.buffer.byteLength).toBe(view.byteLength);
  expect(Buffer.from(view.buffer).toString()).toBe(text);
}

/** Every typed array type of the Node running the test (Float16Array from Node 24 on). */
const typedArrayTypes = Object.getOwnPropertyNames(globalThis)
  .filter((name) => name.endsWith('Array') && name !== 'Array')
  .map((name) => [name, (globalThis as unknown as Record<string, new (buffer: ArrayBuffer, offset: number, length: number) => ArrayBufferView>)[name]!] as const)
  .filter(([, Type]) => typeof Type === 'function' && ArrayBuffer.isView(new Type(new ArrayBuffer(16), 8, 1)));

describe('views cross with their own bytes only', () => {
  it(`every typed array type this Node has (${typedArrayTypes.length}) keeps its type, length and values through each tightening, not only the ones Node 20 has`, () => {
    expect(typedArrayTypes.length).toBeGreaterThanOrEqual(11);
    for (const [name, Type] of typedArrayTypes) {
      const view = new Type(new ArrayBuffer(64), 8, 4);
      (view as unknown as { fill(value: unknown): void }).fill(name.startsWith('Big') ? 3n : 3);
      const whole = new Type(new ArrayBuffer(64), 0, 64 / (view as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT);
      for (const copy of [tightenViews(view), tightenViews({ view }).view, deserializeLikeClone(v8.serialize(view)) as ArrayBufferView, cloneForWire({ view }, 'result').view]) {
        expect(copy.constructor, name).toBe(Type);
        expect(Array.from(copy as unknown as ArrayLike<unknown>), name).toEqual(Array.from(view as unknown as ArrayLike<unknown>));
        expect(copy.buffer.byteLength, name).toBe(copy.byteLength);
      }
      // A whole view is handed on as it is.
      expect(tightenViews(whole)).toBe(whole);
    }
  });

  it('cloneForWire: a view anywhere in the value (object, array, Map key and value, Set, nested) keeps only its bytes; one view met twice stays one', () => {
    const shared = windowOn('shared');
    const value = {
      top: windowOn('top'),
      list: [1, windowOn('in list')],
      map: new Map<unknown, unknown>([['first', 1], [windowOn('key'), windowOn('value')], ['last', 3]]),
      set: new Set([windowOn('item')]),
      deep: { a: { b: { c: { d: { e: shared } } } }, again: shared },
      pooled: Buffer.from('pooled'),
      words: new Uint16Array(new ArrayBuffer(64), 8, 2),
      data: new DataView(new ArrayBuffer(32), 4, 3),
    };
    const copy = cloneForWire(value, 'input');
    expectTight(copy.top, 'top');
    expectTight(copy.list[1] as Uint8Array, 'in list');
    const [key, item] = [...copy.map][1]!;
    expectTight(key as Uint8Array, 'key');
    expectTight(item as Uint8Array, 'value');
    expect([...copy.map.keys()][0]).toBe('first');
    expect([...copy.map.keys()][2]).toBe('last');
    expectTight([...copy.set][0]!, 'item');
    expectTight(copy.deep.a.b.c.d.e, 'shared');
    expect(copy.deep.again).toBe(copy.deep.a.b.c.d.e);
    expectTight(copy.pooled, 'pooled');
    expect(copy.words).toBeInstanceOf(Uint16Array);
    expect(copy.words.buffer.byteLength).toBe(4);
    expect(copy.data).toBeInstanceOf(DataView);
    expect(copy.data.buffer.byteLength).toBe(3);
  });

  it("a view as an Error's cause (not enumerable), deep in one, or as a small array's named property is cut down too", () => {
    const list = Object.assign([1, 2], { extra: windowOn('extra') });
    const copy = cloneForWire({ err: new Error('e', { cause: windowOn('cause') }), deep: new Error('e', { cause: { inner: windowOn('inner') } }), list }, 'input');
    expectTight(copy.err.cause as Uint8Array, 'cause');
    expectTight((copy.deep.cause as { inner: Uint8Array }).inner, 'inner');
    expectTight((copy.list as unknown as { extra: Uint8Array }).extra, 'extra');
  });

  it('walks what arrays hold, not their length: sparse arrays of length 2**32 - 1, many of them, take no time', () => {
    const sparse = () => {
      const array: unknown[] = [];
      array.length = 2 ** 32 - 1;
      return array;
    };
    const many = Array.from({ length: 1000 }, sparse);
    many[500]![7] = windowOn('found');
    const copy = tightenViews(structuredClone({ many, one: sparse() }));
    expect(copy.one.length).toBe(2 ** 32 - 1);
    expectTight(copy.many[500]![7] as Uint8Array, 'found');
    // A large dense array is walked by its indices.
    const dense = tightenViews(structuredClone(Array.from({ length: 10_000 }, (_, i) => (i === 9_999 ? windowOn('last') : i))));
    expectTight(dense[9_999] as Uint8Array, 'last');
  });

  it('reads each object once when it is met many times: one large array referenced a thousand times (it serialises once)', () => {
    const big = Array.from({ length: 1_000_000 }, (_, i) => (i === 999_999 ? windowOn('end') : i));
    const copy = tightenViews(structuredClone({ refs: Array.from({ length: 1000 }, () => big) }));
    expect(copy.refs[999]).toBe(copy.refs[0]);
    expectTight(copy.refs[0]![999_999] as Uint8Array, 'end');
  });

  it('one view met twice stays one when the value is too large for the first walk: the second walk keeps the copy the first made', () => {
    const view = windowOn('twice');
    // The tail's view is copied first; the list (60 000 places) ends the first walk before its own.
    const value = { list: [{ view }, ...new Array<number>(60_000).fill(0)], tail: { view } };
    tightenViews(value);
    expectTight(value.tail.view, 'twice');
    expect((value.list[0] as { view: Uint8Array }).view).toBe(value.tail.view);
  });

  it('a view that is already tight, and a shared buffer, are left as they are', () => {
    const own = new Uint8Array([1, 2, 3]);
    expect(tightenViews({ own }).own).toBe(own);
    const shared = new Int32Array(new SharedArrayBuffer(16), 4, 1);
    expect(tightenViews({ shared }).shared).toBe(shared);
  });

  it('a value nested far deeper than a stack allows, with a cycle, is walked to its view', () => {
    const root: Record<string, unknown> = {};
    let at = root;
    for (let i = 0; i < 100_000; i++) at = (at.next = {}) as Record<string, unknown>;
    at.view = windowOn('bottom');
    at.back = root;
    tightenViews(root);
    expectTight(at.view as Uint8Array, 'bottom');
  });

  it("a value made in another realm (a host's test file under Jest, a vm context): views in its Maps and Sets are cut down, each keeping its type", () => {
    // Jest runs a test file, and the library it imports, in a vm context of its own, while what Node
    // decodes (structuredClone, a thread's messages) is of Node's realm: instanceof Map finds none.
    const value = vm.runInContext(
      `const around = (text) => new TextEncoder().encode('SECRET-BEFORE|' + text + '|SECRET-AFTER').subarray(14, 14 + text.length);
       ({ map: new Map([['key', around('in map')]]), set: new Set([around('in set')]), floats: new Float64Array([1.5, 2.5, 3.5, 4.5]).subarray(1) })`,
      vm.createContext({ TextEncoder }),
    ) as { map: Map<string, Uint8Array>; set: Set<Uint8Array>; floats: Float64Array };
    expect(value.map).not.toBeInstanceOf(Map);
    tightenViews(value);
    expectTight(value.map.get('key')!, 'in map');
    expectTight([...value.set][0]!, 'in set');
    expect(value.floats).toBeInstanceOf(Float64Array);
    expect([...value.floats]).toEqual([2.5, 3.5, 4.5]);
    expect(value.floats.buffer.byteLength).toBe(24);
  });

  it("deserializeLikeClone: a view gets its own buffer, not a window on the message's bytes", () => {
    const message = v8.serialize({ u: Buffer.from('one'), f: new Float64Array([1.5, 2.5]) });
    // A message read from a connection sits in a larger buffer, with other messages around it.
    const received = Buffer.concat([Buffer.from('OTHER-MESSAGE'), message, Buffer.from('NEXT-MESSAGE')]).subarray(13, 13 + message.length);
    const decoded = deserializeLikeClone(received) as { u: Uint8Array; f: Float64Array };
    expect(Buffer.isBuffer(decoded.u)).toBe(false);
    expectTight(decoded.u, 'one');
    expect(decoded.f).toBeInstanceOf(Float64Array);
    expect([...decoded.f]).toEqual([1.5, 2.5]);
    expect(decoded.f.buffer.byteLength).toBe(16);
  });
});
