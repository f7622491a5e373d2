import { webcrypto } from 'node:crypto';
import net from 'node:net';
import { serialize } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import { refuseTaskWhatV8Loses } from '../src/v8-wire.js';

// Objects of Node's own that structured clone keeps (so a task's input, cloned at the call, holds
// them) and that v8's serialiser, the subprocess and queue wires, writes as {} on some Nodes (a
// Blob from 22, a CryptoKey on 22, a BlockList or SocketAddress on 22 and 24) or refuses (20).
// Whichever this Node does, none goes on as {}: v8 refuses it, or the task is refused before.
const lossy: Array<[string, () => unknown]> = [
  ['a Blob', () => new Blob(['x'])],
  ['a CryptoKey', () => webcrypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, true, ['sign'])],
  ['a net.BlockList', () => new net.BlockList()],
  ['a net.SocketAddress', () => new net.SocketAddress({ address: '127.0.0.1' })],
];

function thrown(run: () => unknown): unknown {
  try {
    run();
    return undefined;
  } catch (error) {
    return error;
  }
}

describe('refuseTaskWhatV8Loses: what v8 would write as {} is refused, naming where', () => {
  it.each(lossy)('%s in an input or a context never crosses as {}', async (_, make) => {
    const value = structuredClone(await make());
    const byV8 = thrown(() => serialize(value));
    for (const [task, path] of [
      [{ input: { list: [1, value] } }, 'input.list[1]'],
      [{ input: 1, context: { tenant: { key: value } } }, 'context.tenant.key'],
    ] as const) {
      const refused = thrown(() => refuseTaskWhatV8Loses(task));
      if (byV8 !== undefined) continue; // This Node's v8 refuses it itself (said where it is written).
      expect(refused).toBeInstanceOf(ValidationError);
      expect((refused as ValidationError).details).toMatchObject({ reason: 'not-serializable', path });
    }
  });

  it.each(lossy)('%s as a Map key, a Map value or a Set member is refused too', async (_, make) => {
    const value = structuredClone(await make());
    for (const [input, path] of [
      [{ m: new Map([[value, 1]]) }, undefined],
      [{ m: new Map([['k', value]]) }, 'input.m.k'],
      [{ s: new Set([1, value]) }, 'input.s[1]'],
    ] as const) {
      const refused = thrown(() => refuseTaskWhatV8Loses({ input }));
      if (thrown(() => serialize(input)) !== undefined) continue; // This Node's v8 refuses it itself.
      expect(refused).toBeInstanceOf(ValidationError);
      expect((refused as ValidationError).details).toMatchObject({ reason: 'not-serializable', ...(path ? { path } : {}) });
    }
  });

  it('lets through what v8 writes whole or as the docs say: plain data, typed arrays, Maps, errors (a DOMException becomes an Error)', () => {
    const loop: Record<string, unknown> = { n: 1 };
    loop.self = loop;
    const input = { a: [1, 'x', null], m: new Map([[{ k: 1 }, new Set([2n])]]), d: new Date(0), r: /x/g, v: new Uint16Array(2), e: new RangeError('r'), dom: new DOMException('gone', 'AbortError'), loop };
    expect(thrown(() => refuseTaskWhatV8Loses({ input: structuredClone(input), context: { n: 1 } }))).toBeUndefined();
  });
});
