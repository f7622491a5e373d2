import { createRequire } from 'node:module';
import * as esm from '@kb-labs/plugin-execution-core';
import { AbortedError, BackendNotInstalledError, ERROR_CODES, ExecutionError, HandlerError, HandlerNotFoundError, InternalError, PermissionDeniedError, QueueFullError, ShuttingDownError, TimeoutError, ValidationError, WorkerCrashedError, WorkspaceError, deserializeError, isExecutionError, isSerializedError, serializeError, type SerializedError } from '@kb-labs/plugin-execution-core';
import { handlerThrew, toInternalError, toHandlerError, toWireValue } from '@kb-labs/plugin-execution-core/backend-kit';
import { describe, expect, it } from 'vitest';

type Core = typeof esm;
const cjs = createRequire(import.meta.url)('@kb-labs/plugin-execution-core') as Core;
/** Any class of the family, built with details of the test's own. */
type AnyErrorClass = new (message: string, options: { details: Record<string, unknown>; cause?: unknown }) => esm.ExecutionError;

const FAMILY = [
  [HandlerNotFoundError, 'HANDLER_NOT_FOUND', 'HandlerNotFoundError'],
  [TimeoutError, 'TIMEOUT', 'TimeoutError'],
  [PermissionDeniedError, 'PERMISSION_DENIED', 'PermissionDeniedError'],
  [QueueFullError, 'QUEUE_FULL', 'QueueFullError'],
  [WorkerCrashedError, 'WORKER_CRASHED', 'WorkerCrashedError'],
  [ValidationError, 'VALIDATION_ERROR', 'ValidationError'],
  [AbortedError, 'ABORTED', 'AbortedError'],
  [HandlerError, 'HANDLER_ERROR', 'HandlerError'],
  [ShuttingDownError, 'SHUTTING_DOWN', 'ShuttingDownError'],
  [WorkspaceError, 'WORKSPACE_ERROR', 'WorkspaceError'],
  [BackendNotInstalledError, 'BACKEND_NOT_INSTALLED', 'BackendNotInstalledError'],
  [InternalError, 'INTERNAL_ERROR', 'InternalError'],
] as const;

/** The two trips an error takes in practice: JSON (subprocess frames) and structured clone (worker threads). */
const TRIPS = {
  json: (error: unknown) => deserializeError(JSON.parse(JSON.stringify(serializeError(error)))),
  structuredClone: (error: unknown) => deserializeError(structuredClone(serializeError(error))),
} as const;

class QuotaError extends Error {
  readonly retryable = true;
  quota: { used: number; limit: number };
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'QuotaError';
    this.quota = { used: 11, limit: 10 };
  }
}

describe('the error family', () => {
  it('lists exactly the codes of the classes', () => {
    expect([...ERROR_CODES].sort()).toEqual(FAMILY.map(([, code]) => code).sort());
  });

  describe.each(FAMILY)('%o', (Class, code, name) => {
    it('has its code, name, default message and class chain', () => {
      // Left out here, a class's details are required by its type where its code has required fields.
      const error = new (Class as unknown as new () => InstanceType<typeof Class>)();
      expect(error.code).toBe(code);
      expect(error.name).toBe(name);
      expect(error.message.length).toBeGreaterThan(0);
      expect(error).toBeInstanceOf(Class);
      expect(error).toBeInstanceOf(ExecutionError);
      expect(error).toBeInstanceOf(Error);
      expect(error.details).toEqual({});
      expect(isExecutionError(error)).toBe(true);
      expect(Object.keys(error)).not.toContain('name');
      expect(String(error)).toBe(`${name}: ${error.message}`);
      expect(error.stack).toContain(name);
    });

    it.each(Object.keys(TRIPS) as Array<keyof typeof TRIPS>)('survives the %s trip with class, code, message, stack, details and cause', (trip) => {
      const cause = new RangeError('inner problem');
      // Details beyond a code's documented fields still cross the wire as they are.
      const Made = Class as unknown as new (message: string, options: { details: Record<string, unknown>; cause: unknown }) => ExecutionError;
      const error = new Made(`custom ${code} message`, { details: { pluginId: '@a/b', attempts: [1, 2], nested: { ok: true } }, cause });
      const back = TRIPS[trip](error);
      expect(back).toBeInstanceOf(Class);
      expect(back.constructor).toBe(Class);
      expect(back).toMatchObject({ code, name, message: `custom ${code} message` });
      expect(back.stack).toBe(error.stack);
      expect((back as ExecutionError).details).toEqual({ pluginId: '@a/b', attempts: [1, 2], nested: { ok: true } });
      expect(back.cause).toBeInstanceOf(RangeError);
      expect((back.cause as Error).message).toBe('inner problem');
      expect((back.cause as Error).stack).toBe(cause.stack);
    });
  });

  it('keeps a code from a newer version of the family as the base class', () => {
    const wire: SerializedError = { $error: 1, name: 'FancyError', message: 'new kind', code: 'SOMETHING_NEW', details: { a: 1 } };
    const back = deserializeError(wire);
    expect(back).toBeInstanceOf(ExecutionError);
    expect(back).toMatchObject({ code: 'SOMETHING_NEW', message: 'new kind', details: { a: 1 } });
  });
});

describe('wire form of errors a handler throws', () => {
  it.each(Object.keys(TRIPS) as Array<keyof typeof TRIPS>)(
    'a foreign Error subclass with own props and a cause chain comes back whole (%s)',
    (trip) => {
      const root = new TypeError('bad type');
      const middle = new QuotaError('over quota', { cause: root });
      const thrown = new Error('request failed', { cause: middle });
      Object.assign(thrown, { status: 503, url: 'https://example.test/x', tags: ['a', 'b'] });
      const wrapped = toHandlerError(thrown);
      const back = TRIPS[trip](wrapped);

      expect(back).toBeInstanceOf(HandlerError);
      expect(back).toMatchObject({ code: 'HANDLER_ERROR', message: 'request failed', details: { name: 'Error' } });
      expect(back.stack).toBe(thrown.stack);

      const c1 = back.cause as Error & Record<string, unknown>;
      expect(c1).toBeInstanceOf(Error);
      expect(c1).toMatchObject({ name: 'Error', message: 'request failed', status: 503, url: 'https://example.test/x', tags: ['a', 'b'] });
      expect(c1.stack).toBe(thrown.stack);

      const c2 = c1.cause as Error & Record<string, unknown>;
      expect(c2).toMatchObject({ name: 'QuotaError', message: 'over quota', retryable: true, quota: { used: 11, limit: 10 } });
      expect(c2.stack).toBe(middle.stack);
      expect(isExecutionError(c2)).toBe(false);

      const c3 = c2.cause as Error;
      expect(c3).toBeInstanceOf(TypeError);
      expect(c3.message).toBe('bad type');
      expect(c3.stack).toBe(root.stack);
      expect(c3.cause).toBeUndefined();
    },
  );

  it('keeps a system error code and its fields on a foreign error', () => {
    const fsError = Object.assign(new Error("ENOENT: no such file or directory, open 'x'"), { code: 'ENOENT', errno: -2, syscall: 'open', path: 'x' });
    const back = TRIPS.json(fsError) as Error & Record<string, unknown>;
    expect(back).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'open', path: 'x' });
    expect(isExecutionError(back)).toBe(false);
  });

  it('keeps a foreign error\'s code that is not a string, its details and its errors list (a gRPC ServiceError, say)', () => {
    const grpc = Object.assign(new Error('14 UNAVAILABLE: svc down'), { code: 14, details: 'svc down', errors: ['first try'], metadata: { retry: true } });
    const back = TRIPS.json(toHandlerError(grpc)).cause as Error & Record<string, unknown>;
    expect(back).toMatchObject({ message: '14 UNAVAILABLE: svc down', code: 14, details: 'svc down', errors: ['first try'], metadata: { retry: true } });
    expect(isExecutionError(back)).toBe(false);
  });

  it('does not take a foreign error that happens to carry one of our codes for one of ours', () => {
    const foreign = Object.assign(new Error('upstream timed out'), { code: 'TIMEOUT', upstream: 'db' });
    expect(isExecutionError(foreign)).toBe(false);
    const wrapped = toHandlerError(foreign);
    expect(wrapped).toBeInstanceOf(HandlerError);
    const back = TRIPS.structuredClone(wrapped);
    expect(back).toBeInstanceOf(HandlerError);
    expect(back.cause).toMatchObject({ code: 'TIMEOUT', upstream: 'db', message: 'upstream timed out' });
    expect(back.cause).not.toBeInstanceOf(TimeoutError);
  });

  it('keeps AggregateError with its inner errors and cause', () => {
    const agg = new AggregateError([new TypeError('one'), new QuotaError('two')], 'several', { cause: new Error('why') });
    for (const trip of Object.values(TRIPS)) {
      const back = trip(agg) as AggregateError;
      expect(back).toBeInstanceOf(AggregateError);
      expect(back.message).toBe('several');
      expect(back.errors).toHaveLength(2);
      expect(back.errors[0]).toBeInstanceOf(TypeError);
      expect(back.errors[1]).toMatchObject({ name: 'QuotaError', message: 'two', retryable: true });
      expect((back.cause as Error).message).toBe('why');
      expect(back.stack).toBe(agg.stack);
    }
  });

  it("keeps a SuppressedError's error and suppressed (own, not enumerable: what `using` throws on Node 24)", () => {
    // Node 24's own class where there is one; on every Node, one made as the standard makes it.
    class ShapedSuppressedError extends Error {
      constructor(error: unknown, suppressed: unknown, message: string) {
        super(message);
        this.name = 'SuppressedError';
        Object.defineProperty(this, 'error', { value: error, writable: true, configurable: true });
        Object.defineProperty(this, 'suppressed', { value: suppressed, writable: true, configurable: true });
      }
    }
    const Native = (globalThis as { SuppressedError?: new (error: unknown, suppressed: unknown, message: string) => Error }).SuppressedError;
    for (const Suppressed of Native ? [ShapedSuppressedError, Native] : [ShapedSuppressedError]) {
      const thrown = new Suppressed(new TypeError('disposing failed'), new RangeError('the body failed'), 'both failed');
      expect(Object.keys(thrown)).not.toContain('error');
      for (const trip of Object.values(TRIPS)) {
        const back = trip(thrown) as Error & { error?: unknown; suppressed?: unknown };
        expect(back).toMatchObject({ name: 'SuppressedError', message: 'both failed' });
        expect(back.error).toMatchObject({ name: 'TypeError', message: 'disposing failed' });
        expect(back.suppressed).toMatchObject({ name: 'RangeError', message: 'the body failed' });
      }
    }
  });

  it('serialises an error that appears twice (not a cycle) both times', () => {
    const shared = new TypeError('shared');
    const agg = new AggregateError([shared, shared], 'twice', { cause: shared });
    const back = TRIPS.json(agg) as AggregateError;
    expect(back.errors.map((e: Error) => e.message)).toEqual(['shared', 'shared']);
    expect(back.errors[1]).toBeInstanceOf(TypeError);
    expect((back.cause as Error).message).toBe('shared');
  });

  it('cuts circular cause chains instead of looping', () => {
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    (a as { cause?: unknown }).cause = b;
    const self = new Error('self');
    (self as { cause?: unknown }).cause = self;
    for (const trip of Object.values(TRIPS)) {
      const back = trip(a);
      expect(back.message).toBe('a');
      expect((back.cause as Error).message).toBe('b');
      expect((back.cause as Error).cause).toBe('[Circular]');
      expect(trip(self).cause).toBe('[Circular]');
    }
  });

  it('cuts very long cause chains with a marker', () => {
    let chain: Error = new Error('e0');
    for (let i = 1; i < 50; i++) chain = new Error(`e${i}`, { cause: chain });
    const wire = serializeError(chain);
    expect(JSON.stringify(wire).length).toBeLessThan(100_000);
    let node: unknown = TRIPS.json(chain);
    const messages: string[] = [];
    while (node instanceof Error) {
      messages.push(node.message);
      node = node.cause;
    }
    expect(messages.slice(0, 3)).toEqual(['e49', 'e48', 'e47']);
    expect(messages.length).toBeGreaterThanOrEqual(8);
    expect(node).toBe('[Truncated]');
  });

  it('bounds what one error writes when it meets the same value under many paths (shared, not circular)', () => {
    // An AggregateError listing one error 100 times, each listing the next the same way, 8 deep: 100^8 errors written out.
    let shared: Error = new Error('leaf');
    for (let i = 0; i < 8; i++) shared = new AggregateError(Array.from({ length: 100 }, () => shared), `level ${i}`);
    // One 60,000-character string under 10,000 paths of an own prop: 600 MB written out.
    const text = 'y'.repeat(60_000);
    const inner = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, text]));
    const wide = Object.assign(new Error('wide'), { table: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, inner])) });
    for (const error of [shared, wide]) {
      const json = JSON.stringify(serializeError(error));
      expect(json.length).toBeLessThan(16 * 1024 * 1024);
      expect(json).toContain('[Truncated]');
    }
    const back = deserializeError(serializeError(wide)) as Error & { table: Record<string, Record<string, string>> };
    expect(back.table.k0!.k0).toBe(text);
  });

  it('survives getters that throw', () => {
    const error = new Error('getters');
    Object.defineProperty(error, 'boom', { enumerable: true, get: () => { throw new Error('no reading'); } });
    const nasty = new Error('placeholder');
    Object.defineProperty(nasty, 'message', { get: () => { throw new Error('no message'); } });
    Object.defineProperty(nasty, 'cause', { get: () => { throw new Error('no cause'); } });
    for (const trip of Object.values(TRIPS)) {
      expect((trip(error) as Error & { boom: unknown }).boom).toBe('[Getter threw: no reading]');
      const back = trip(nasty);
      expect(back.message).toBe('[Getter threw: no message]');
      expect(back.cause).toBe('[Getter threw: no cause]');
    }
  });

  it("keeps the stack's frames of an error whose message or name getter throws (V8 writes the stack from both), and puts the getter back", () => {
    for (const key of ['message', 'name']) {
      const nasty = new Error('placeholder');
      const getter = { get: () => { throw new Error(`no ${key}`); }, configurable: true };
      Object.defineProperty(nasty, key, getter);
      const wire = serializeError(nasty);
      expect(wire.stack).toContain(`[Getter threw: no ${key}]`);
      expect(wire.stack).toContain('errors.test.ts');
      expect(Object.getOwnPropertyDescriptor(nasty, key)?.get).toBe(getter.get);
      // Frozen, the error cannot be read around: what could not be read is said, as before, and nothing throws.
      const frozen = Object.freeze(Object.defineProperty(new Error('placeholder'), key, getter));
      expect(serializeError(frozen).stack).toBe(`[Getter threw: no ${key}]`);
    }
  });

  it('bounds huge messages and marks the cut; keeps large ones exactly', () => {
    const large = 'm'.repeat(60_000);
    expect(TRIPS.json(new Error(large)).message).toBe(large);
    const huge = `${'h'.repeat(2_000_000)}END`;
    const wire = serializeError(new TimeoutError(huge, { details: { timeoutMs: 1 } }));
    expect(wire.message.length).toBeLessThan(70_000);
    expect(wire.message).toMatch(/more chars\]$/);
    expect(wire.stack!.length).toBeLessThan(70_000);
    const back = deserializeError(structuredClone(wire));
    expect(back).toBeInstanceOf(TimeoutError);
    expect(back.message.startsWith('h'.repeat(1000))).toBe(true);
  });

  it('cuts a huge message between the halves of no surrogate pair (an emoji), wherever the cut falls', () => {
    for (const lead of [0, 1]) {
      const { message } = serializeError(new Error('a'.repeat(lead) + '😀'.repeat(40_000)));
      expect(message).toMatch(/more chars\]$/);
      // A lone half of a pair becomes U+FFFD once written as UTF-8.
      expect(message, `lead ${lead}`).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
    }
  });

  it('makes details JSON- and clone-safe: cycles, bigint, functions, symbols, dates, errors', () => {
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic.self = cyclic;
    const error = new ValidationError('odd details', {
      details: { cyclic, big: 12n, fn: function namedFn() {}, sym: Symbol('s'), when: new Date(0), inner: new RangeError('r'), nan: Number.NaN },
    });
    const back = TRIPS.structuredClone(error) as ValidationError;
    expect(back.details).toMatchObject({
      cyclic: { name: 'loop', self: '[Circular]' },
      big: '12n',
      fn: '[Function namedFn]',
      sym: 'Symbol(s)',
      when: '1970-01-01T00:00:00.000Z',
      inner: { $error: 1, name: 'RangeError', message: 'r' },
      nan: 'NaN',
    });
    expect(TRIPS.json(error)).toMatchObject({ details: back.details });
  });

  it('keeps non-Error causes as values', () => {
    for (const cause of [42, 'text', null, { a: [1, { b: 2 }] }, false]) {
      for (const trip of Object.values(TRIPS)) {
        const back = trip(new WorkerCrashedError('crashed', { details: { reason: 'exit' }, cause }));
        expect(back).toBeInstanceOf(WorkerCrashedError);
        expect(back.cause).toEqual(cause);
        expect(Object.hasOwn(back, 'cause')).toBe(true);
      }
    }
    expect(Object.hasOwn(TRIPS.json(new TimeoutError('no cause', { details: { timeoutMs: 1 } })), 'cause')).toBe(false);
  });

  it('toJSON() is the wire form, so JSON.stringify(error) keeps everything', () => {
    const error = new PermissionDeniedError('nope', { details: { service: 'cache', method: 'set' }, cause: new Error('c') });
    const json = JSON.parse(JSON.stringify(error)) as SerializedError;
    expect(isSerializedError(json)).toBe(true);
    expect(json).toEqual(JSON.parse(JSON.stringify(serializeError(error))));
    expect(json).toMatchObject({ $error: 1, name: 'PermissionDeniedError', code: 'PERMISSION_DENIED', message: 'nope', details: { service: 'cache', method: 'set' } });
    expect(deserializeError(json)).toBeInstanceOf(PermissionDeniedError);
    // Nested in a larger payload too.
    const payload = JSON.parse(JSON.stringify({ result: { error } })) as { result: { error: unknown } };
    expect(deserializeError(payload.result.error)).toMatchObject({ code: 'PERMISSION_DENIED', details: { service: 'cache' } });
  });

});

/**
 * The caps the wire form itself keeps (docs/errors.md, README "cut to 8 levels, 100 keys a level"),
 * read on what is sent, not after a trip: deserializeError caps again on the way in, which hid
 * any of these being lost on the way out (a worker of this version talking to a host of another).
 */
describe('wire form caps, as sent', () => {
  it('carries a cause chain 8 links below the error, then "[Truncated]"', () => {
    let chain: Error = new Error('e0');
    for (let i = 1; i < 50; i++) chain = new Error(`e${i}`, { cause: chain });
    let node: unknown = serializeError(chain);
    const messages: string[] = [];
    while (isSerializedError(node)) {
      messages.push(node.message);
      node = node.cause;
    }
    expect(messages).toEqual(Array.from({ length: 9 }, (_, i) => `e${49 - i}`));
    expect(node).toEqual({ $value: '[Truncated]' });
  });

  it('cuts a value 8 levels down, and an object past 100 keys saying how many more', () => {
    type Nested = { next?: Nested | string };
    const deep: Nested = {};
    let at = deep;
    for (let i = 0; i < 20; i++) at = at.next = {};
    let node = toWireValue(deep) as Nested | string;
    let levels = 0;
    for (; typeof node === 'object'; levels++) node = node.next!;
    expect([levels, node]).toEqual([8, '[Truncated]']);
    const wide = toWireValue(Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`k${i}`, i]))) as Record<string, unknown>;
    expect(Object.keys(wide)).toHaveLength(101);
    expect(wide['…']).toBe('50 more keys');
  });

  it("keeps 100 of an error's own properties, and 100 of an AggregateError's errors", () => {
    const wide = Object.assign(new Error('wide'), Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`p${i}`, i])));
    expect(Object.keys(serializeError(wide).props!)).toHaveLength(100);
    const many = new AggregateError(Array.from({ length: 150 }, (_, i) => new Error(`inner ${i}`)), 'many');
    expect(serializeError(many).errors).toHaveLength(100);
  });
});

describe('toInternalError', () => {
  it('names where the host side failed, keeps the cause, and is never reported as the handler\'s error', () => {
    const bug = new TypeError("Cannot read properties of undefined (reading 'x')");
    const error = toInternalError(bug, 'the subprocess backend');
    expect(error).toBeInstanceOf(InternalError);
    expect(error.code).toBe('INTERNAL_ERROR');
    expect(error.message).toBe("Internal error in the subprocess backend: Cannot read properties of undefined (reading 'x')");
    expect(error.details).toEqual({ where: 'the subprocess backend', what: "Cannot read properties of undefined (reading 'x')" });
    expect(error.cause).toBe(bug);
    expect(deserializeError(JSON.parse(JSON.stringify(serializeError(error))))).toBeInstanceOf(InternalError);
  });

  it('passes our own errors through and describes a thrown non-Error by its type', () => {
    const timeout = new TimeoutError('t', { details: { timeoutMs: 5 } });
    expect(toInternalError(timeout, 'x')).toBe(timeout);
    expect(toInternalError('oops', 'a hook').details).toEqual({ where: 'a hook', what: 'oops' });
    expect(toInternalError(42, 'a hook').message).toBe('Internal error in a hook: a thrown number');
  });
});

describe('toHandlerError', () => {
  const circular: Record<string, unknown> = { k: 1 };
  circular.me = circular;
  const cases: Array<[string, unknown, RegExp, string]> = [
    ['42', 42, /a number: 42/, 'number'],
    ['undefined', undefined, /undefined/, 'undefined'],
    ['null', null, /null/, 'null'],
    ['{}', {}, /non-Error object: \{\}/, 'object'],
    ['a circular object', circular, /\[Circular\]/, 'object'],
    ['a symbol', Symbol('sym'), /Symbol\(sym\)/, 'symbol'],
    ['a function', function thrower() {}, /function: thrower/, 'function'],
    ['a BigInt', 10n ** 30n, /bigint: 1000000000000000000000000000000/, 'bigint'],
    ['a string', 'oops', /string: oops/, 'string'],
    ['an array', [1, 'two'], /\[1,"two"\]/, 'array'],
  ];

  it.each(cases)('turns %s into a HandlerError that describes it and crosses the wire', (_label, thrown, message, type) => {
    const error = toHandlerError(thrown);
    expect(error).toBeInstanceOf(HandlerError);
    if (error.code !== 'HANDLER_ERROR') throw new Error(`expected HANDLER_ERROR, got ${error.code}`);
    expect(error.message).toMatch(message);
    expect(error.details.thrown).toMatchObject({ type });
    for (const trip of Object.values(TRIPS)) {
      const back = trip(error);
      expect(back).toBeInstanceOf(HandlerError);
      expect(back.message).toBe(error.message);
      expect((back as HandlerError).details).toEqual(JSON.parse(JSON.stringify(error.details)));
    }
  });

  it('passes our own errors through untouched; one of another copy of the package is made ours', () => {
    const denied = new PermissionDeniedError('denied');
    expect(toHandlerError(denied)).toBe(denied);
    const foreignCopy = new cjs.PermissionDeniedError('from the other build', { details: { resource: 'platform.kv.get', phase: 'platform' } });
    const made = toHandlerError(foreignCopy);
    // instanceof works, as it does for the same error on a backend that carries it over the wire.
    expect(made).toBeInstanceOf(PermissionDeniedError);
    expect(made).toBeInstanceOf(ExecutionError);
    expect(made).toMatchObject({ code: 'PERMISSION_DENIED', message: 'from the other build', details: { resource: 'platform.kv.get', phase: 'platform' } });
    expect(made.stack).toBe(foreignCopy.stack);
    // A copy of this build's class, read safely: never the plugin's own object passed on.
    expect(made).not.toBe(foreignCopy);
    expect(Object.getPrototypeOf(made)).toBe(PermissionDeniedError.prototype);
  });

  it('instanceof holds for an error of another copy of the package (a backend that brought its own core), by its code', () => {
    for (const [Class, code] of FAMILY) {
      const Other = cjs.ERROR_CLASSES[code] as unknown as AnyErrorClass;
      expect(Other).not.toBe(Class);
      const foreign = new Other('from the other copy', { details: {} });
      expect(foreign instanceof Class, code).toBe(true);
      expect(foreign instanceof ExecutionError, code).toBe(true);
      // Only its own class: a TIMEOUT of another copy is no HandlerError here.
      for (const [Another, otherCode] of FAMILY) if (otherCode !== code) expect(foreign instanceof Another, `${code} / ${otherCode}`).toBe(false);
    }
    // A code this version does not know (a newer copy's): an ExecutionError still.
    expect(new cjs.ExecutionError('NEWER_CODE', 'newer') instanceof ExecutionError).toBe(true);
    expect(new cjs.ExecutionError('NEWER_CODE', 'newer') instanceof TimeoutError).toBe(false);
    // Not ours: a plain error with our code, a hostile Proxy (never throws), values that are no objects.
    expect(Object.assign(new Error('x'), { code: 'TIMEOUT' }) instanceof TimeoutError).toBe(false);
    const hostile = new Proxy({}, { get: () => { throw new Error('trap'); }, getPrototypeOf: () => Object.prototype });
    expect(hostile instanceof ExecutionError).toBe(false);
    for (const value of [null, undefined, 'TIMEOUT', 1] as unknown[]) expect(value instanceof ExecutionError).toBe(false);
  });

  it('wraps an Error keeping it as cause, with its stack and name', () => {
    const thrown = new QuotaError('too much');
    const error = toHandlerError(thrown);
    expect(error.cause).toBe(thrown);
    expect(error.stack).toBe(thrown.stack);
    expect(error.message).toBe('too much');
    expect(error.details).toEqual({ name: 'QuotaError' });
  });

  it("cuts its own stack as it cuts its own message, the thrown error kept whole as cause (a host that logs error.stack writes 64 KiB, not the handler's 10 MB message again)", () => {
    const thrown = new Error('m'.repeat(1_000_000));
    const error = toHandlerError(thrown);
    expect(error.cause).toBe(thrown);
    expect(error.message.length).toBeLessThanOrEqual(64 * 1024);
    expect(error.stack!.length).toBeLessThanOrEqual(64 * 1024);
    expect(error.stack).toMatch(/^Error: m+… \[\d+ more chars\]$/);
    // The same for an error only shaped like ours (a plugin's own install of the package).
    const foreign = new cjs.ValidationError('v'.repeat(1_000_000), { details: {} });
    expect(toHandlerError(foreign).stack!.length).toBeLessThanOrEqual(64 * 1024);
  });

  it('uses the name when an Error has no message', () => {
    class Silent extends Error {
      override name = 'Silent';
    }
    expect(toHandlerError(new Silent()).message).toBe('Silent');
  });

  it('copes with hostile values: throwing getters, throwing proxy traps, revoked proxies', () => {
    const trap = () => {
      throw new Error('trap');
    };
    const hostileProxy = new Proxy({}, { getPrototypeOf: trap, get: trap, ownKeys: trap, getOwnPropertyDescriptor: trap, has: trap });
    const { proxy: revoked, revoke } = Proxy.revocable({}, {});
    revoke();
    const getterObject = Object.defineProperty({}, 'x', { enumerable: true, get: trap });
    for (const thrown of [hostileProxy, revoked, getterObject]) {
      const error = toHandlerError(thrown);
      expect(error).toBeInstanceOf(HandlerError);
      expect(error.message.length).toBeGreaterThan(0);
      expect(() => JSON.stringify(serializeError(error))).not.toThrow();
      expect(() => structuredClone(serializeError(thrown))).not.toThrow();
      expect(isExecutionError(thrown)).toBe(false);
    }
  });
});

describe('deserializeError of something that is not a wire error', () => {
  it.each([[undefined], [null], [42], ['text'], [{}], [{ message: 'no marker' }], [{ $error: 2, message: 'x' }], [{ $error: 1 }]])(
    'gives a HandlerError for %o',
    (wire) => {
      const error = deserializeError(wire);
      expect(error).toBeInstanceOf(HandlerError);
      expect(error.message.length).toBeGreaterThan(0);
    },
  );
});

describe('deserializeError of a malformed wire error (a hostile runner controls every byte)', () => {
  const base = { $error: 1, message: 'm' } as const;
  it.each([
    ['cause: null', { ...base, cause: null }],
    ['cause: a number', { ...base, cause: 5 }],
    ['errors not an array', { ...base, name: 'AggregateError', errors: 5 }],
    ['errors holding non-errors', { ...base, name: 'AggregateError', errors: [null, 5, 'x', {}] }],
    ['name not a string', { ...base, name: { evil: true } }],
    ['code not a string', { ...base, code: ['TIMEOUT'], details: {} }],
    ['details not an object', { ...base, code: 'TIMEOUT', details: 'nope' }],
    ['props not an object', { ...base, props: 'abc' }],
    ['props shadowing methods', { ...base, props: { toString: {}, valueOf: 1, constructor: 'x', message: 'forged', ok: 1 } }],
    ['stack not a string', { ...base, stack: { not: 'a string' } }],
  ])('%s gives a usable Error', (_label, wire) => {
    const error = deserializeError(wire);
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toBe('m');
    expect(typeof error.name).toBe('string');
    expect(() => String(error)).not.toThrow();
    expect(typeof error.stack === 'string' || error.stack === undefined).toBe(true);
    if ((error as ExecutionError).code !== undefined) expect(typeof (error as ExecutionError).code).toBe('string');
    if (isExecutionError(error)) expect(error.details).toBeTypeOf('object');
  });

  it('keeps ordinary props next to the refused ones', () => {
    const error = deserializeError({ ...base, props: { toString: {}, ok: 1 } }) as Error & Record<string, unknown>;
    expect(error.ok).toBe(1);
    expect(Object.hasOwn(error, 'toString')).toBe(false);
  });

  it('survives a handler error with its own toString method, end to end', () => {
    const thrown = Object.assign(new Error('custom'), { toString: () => 'custom!' });
    const back = TRIPS.json(toHandlerError(thrown));
    expect(String(back)).toBe('HandlerError: custom');
    expect(() => String(back.cause)).not.toThrow();
  });

  it.each(['cause', 'errors'] as const)('caps 5000 levels of nesting through %s instead of overflowing the stack', (via) => {
    const text =
      via === 'cause'
        ? `${'{"$error":1,"message":"m","cause":'.repeat(5000)}{"$error":1,"message":"leaf"}${'}'.repeat(5000)}`
        : `${'{"$error":1,"name":"AggregateError","message":"m","errors":['.repeat(5000)}{"$error":1,"message":"leaf"}${']}'.repeat(5000)}`;
    const error = deserializeError(JSON.parse(text));
    expect(error.message).toBe('m');
    let depth = 0;
    for (let node: unknown = error; node instanceof Error; depth++) {
      node = via === 'cause' ? node.cause : (node as AggregateError).errors?.[0];
    }
    expect(depth).toBeGreaterThan(1);
    expect(depth).toBeLessThan(20);
    expect(() => JSON.stringify(serializeError(error))).not.toThrow();
  });

  it('revives at most as many errors as a wire form carries (100,000), however often one error object is listed', () => {
    // Structured clone and v8 keep an object listed twice one object: a message of a few KB lists
    // one error 100 times at each of 8 levels, 100^8 errors revived (a subprocess handler writing
    // it to its pipe held the host's event loop for good). `name` is read twice for each revived.
    let reads = 0;
    let node: Record<string, unknown> = { $error: 1, message: 'leaf' };
    Object.defineProperty(node, 'name', {
      enumerable: true,
      get() {
        if (++reads > 2 * 200_000) throw new Error(`revived over 200,000 errors (${reads / 2})`);
        return 'Error';
      },
    });
    for (let level = 0; level < 8; level++) node = { $error: 1, name: 'AggregateError', message: `level ${level}`, errors: Array(100).fill(node) };
    const error = deserializeError(node);
    let revived = 0;
    const pending: unknown[] = [error];
    while (pending.length > 0) {
      const next = pending.pop();
      if (!(next instanceof Error)) continue;
      revived++;
      pending.push(...((next as AggregateError).errors ?? []));
    }
    expect(revived).toBeLessThanOrEqual(100_001);
    expect(error.message).toBe('level 7');
  });
});

describe('two copies of the package (ESM and CJS builds loaded together)', () => {
  it('really are two copies', () => {
    expect(cjs.TimeoutError).not.toBe(esm.TimeoutError);
    expect(Object.getPrototypeOf(new cjs.TimeoutError(undefined, { details: { timeoutMs: 1 } }))).not.toBe(esm.TimeoutError.prototype);
  });

  it.each(FAMILY.map(([, code, name]) => [name, code] as const))('recognise and revive each other’s %s', (name, code) => {
    const fromCjs = new (cjs[name as keyof Core] as unknown as AnyErrorClass)('made by cjs', { details: { side: 'cjs' }, cause: new Error('c') });
    const fromEsm = new (esm[name as keyof Core] as unknown as AnyErrorClass)('made by esm', { details: { side: 'esm' } });

    expect(esm.isExecutionError(fromCjs)).toBe(true);
    expect(cjs.isExecutionError(fromEsm)).toBe(true);

    const intoEsm = esm.deserializeError(JSON.parse(JSON.stringify(cjs.serializeError(fromCjs))));
    expect(intoEsm).toBeInstanceOf(esm[name as keyof Core] as typeof esm.TimeoutError);
    expect(intoEsm).toMatchObject({ code, message: 'made by cjs', details: { side: 'cjs' } });
    expect((intoEsm.cause as Error).message).toBe('c');

    const intoCjs = cjs.deserializeError(structuredClone(esm.serializeError(fromEsm)));
    expect(intoCjs).toBeInstanceOf(cjs[name as keyof Core] as typeof esm.TimeoutError);
    expect(intoCjs).toMatchObject({ code, message: 'made by esm', details: { side: 'esm' } });

    // One copy serialising the other's error keeps it in the family (details, not props).
    expect(esm.serializeError(fromCjs)).toMatchObject({ code, details: { side: 'cjs' } });
    expect(esm.serializeError(fromCjs).props).toBeUndefined();
  });

  it('does not recognise look-alikes that are not errors of the family', () => {
    for (const copy of [esm, cjs]) {
      expect(copy.isExecutionError({ code: 'TIMEOUT', name: 'TimeoutError', message: 'plain object' })).toBe(false);
      expect(copy.isExecutionError(new Error('plain'))).toBe(false);
      expect(copy.isExecutionError(undefined)).toBe(false);
      expect(copy.isExecutionError('TIMEOUT')).toBe(false);
    }
  });
});

describe('handlerThrew: what a handler may report keeps the shape docs/errors.md gives its code', () => {
  it('an object that only carries the brand (no name, a code of ours or an unknown one) is named by its code, read safely', () => {
    const brand = Symbol.for('@kb-labs/plugin-execution/error');
    const forged = { [brand]: true, code: 'TIMEOUT', message: 'late' };
    // Before: "The handler threw undefined (TIMEOUT): late".
    expect(handlerThrew(forged).message).toBe('The handler threw TimeoutError (TIMEOUT): late');
    const newer = { [brand]: true, code: 'SOME_NEWER_CODE', message: 'm' };
    expect(handlerThrew(newer)).toMatchObject({ code: 'HANDLER_ERROR', message: 'The handler threw ExecutionError (SOME_NEWER_CODE): m', details: { name: 'ExecutionError', code: 'SOME_NEWER_CODE' } });
    // A code getter that throws, or answers one code and then another: the handler's own error, never a throw here (in-process said INTERNAL_ERROR).
    const throwing = Object.defineProperty({ [brand]: true, message: 'm' }, 'code', { get: () => { throw new Error('no code'); } });
    expect(handlerThrew(throwing)).toMatchObject({ code: 'HANDLER_ERROR', details: { code: '[Getter threw: no code]' } });
    let reads = 0;
    const shifty = Object.defineProperty({ [brand]: true, name: 'ValidationError', message: 'm' }, 'code', { get: () => (reads++ === 0 ? 'VALIDATION_ERROR' : 'NOT_A_CODE') });
    expect(() => handlerThrew(shifty)).not.toThrow();
  });
  it('passes well-formed details of ctx\'s own errors as they are', () => {
    const denied = new PermissionDeniedError('no kv', { details: { resource: 'platform.kv.get', phase: 'platform', service: 'kv', method: 'get' } });
    expect(handlerThrew(denied)).toBe(denied);
    const invalid = new ValidationError('bad input', { details: { phase: 'input', issues: [{ path: 'input.n', message: 'must be a number' }], extra: 1 } });
    expect(handlerThrew(invalid)).toBe(invalid);
  });

  it("cuts the message and stack of an error a handler reports as the wire cuts them (64 Ki characters), in-process too", () => {
    for (const thrown of [new ValidationError('v'.repeat(1_000_000), { details: { issues: [{ path: 'a', message: 'm' }] } }), new PermissionDeniedError('p'.repeat(1_000_000), { details: { phase: 'platform' } })]) {
      const reported = handlerThrew(thrown);
      expect(reported).toBeInstanceOf(thrown.constructor as typeof ExecutionError);
      expect(reported.message.length).toBeLessThanOrEqual(64 * 1024);
      expect(reported.stack!.length).toBeLessThanOrEqual(64 * 1024);
      expect(reported.details).toEqual(thrown.details);
      expect(reported.message).toBe(TRIPS.json(thrown).message);
    }
  });

  it('drops what a plugin put in details that the code\'s type does not allow, on every path a handler error takes', () => {
    const forgedIssues = Object.assign(new Error('bad'), { name: 'ValidationError', code: 'VALIDATION_ERROR', details: { issues: 5, phase: 7, note: 'kept' } });
    for (const thrown of [forgedIssues, TRIPS.json(forgedIssues)]) {
      const reported = handlerThrew(thrown);
      expect(reported).toBeInstanceOf(ValidationError);
      expect(reported.details).toEqual({ note: 'kept' });
    }
    const someIssues = new ValidationError('bad', { details: { issues: [{ path: 'a', message: 'm' }, 'junk', { path: 1 }] as never } });
    expect(handlerThrew(someIssues).details).toEqual({ issues: [{ path: 'a', message: 'm' }] });
    // Holes, and a list longer than the wire carries (100), are cut to what every backend keeps.
    const holey = new ValidationError('bad', { details: { issues: [, { path: 'a', message: 'm' }] as never } });
    expect(handlerThrew(holey).details).toEqual({ issues: [{ path: 'a', message: 'm' }] });
    const long = new ValidationError('bad', { details: { issues: Array.from({ length: 1000 }, (_, i) => ({ path: `p${i}`, message: 'm' })) } });
    expect((handlerThrew(long).details as { issues: unknown[] }).issues).toHaveLength(100);
    const sparse: unknown[] = [];
    sparse.length = 1e9;
    sparse[1] = 'network';
    expect(handlerThrew(new PermissionDeniedError('denied', { details: { missing: sparse as string[] } })).details).toEqual({ missing: ['network'] });
    const forgedPreflight = new PermissionDeniedError('denied', { details: { phase: 'preflight', missing: ['network'], resource: { evil: true } as never, extra: 1 } as never });
    const reported = handlerThrew(forgedPreflight);
    expect(reported).toBeInstanceOf(PermissionDeniedError);
    expect(reported.details).toEqual({ missing: ['network'] });
    expect(reported.message).toBe('denied');
  });

  it('details a plugin filled with what JSON cannot write (a BigInt, a Map, a Date, a cycle, a function) come out as the wire carries them: JSON.stringify(error.details) works in-process too', () => {
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = loop;
    const odd = { issues: [{ path: 'a', message: 'm', size: 2n }], bytes: 10n, seen: new Map([[1, 2]]), at: new Date(0), loop, fn() {} };
    const wired = { issues: [{ path: 'a', message: 'm', size: '2n' }], bytes: '10n', seen: {}, at: '1970-01-01T00:00:00.000Z', loop: { a: 1, self: '[Circular]' }, fn: '[Function fn]' };
    const thrown = [new ValidationError('bad', { details: odd as never }), new HandlerError('bad', { details: { name: 'X', ...odd } as never }), new cjs.ValidationError('other copy', { details: odd as never })];
    for (const error of thrown) {
      const reported = handlerThrew(error);
      expect(reported.code).toBe(error.code);
      expect(() => JSON.stringify(reported.details)).not.toThrow();
      expect(reported.details).toMatchObject(wired);
      // The same details as a backend that carries the error over the wire reports.
      expect(reported.details).toEqual((TRIPS.json(error) as ExecutionError).details);
    }
  });

  it('details a plugin made hostile or not an object (null, a string, a getter that throws, a Proxy) come out as the wire would carry them, never as a throw', () => {
    const throwing = Object.defineProperty({}, 'issues', {
      enumerable: true,
      get() {
        throw new Error('no issues for you');
      },
    });
    const trap = new Proxy({ missing: ['network'] }, {
      ownKeys() {
        throw new Error('trap');
      },
    });
    for (const details of [null, 'str', [1, 2], throwing, trap]) {
      for (const Class of [ValidationError, PermissionDeniedError]) {
        const thrown = new Class('refused');
        Object.defineProperty(thrown, 'details', { value: details, enumerable: true });
        const reported = handlerThrew(thrown);
        expect(reported).toBeInstanceOf(Class);
        expect(typeof reported.details).toBe('object');
        expect(Array.isArray(reported.details)).toBe(false);
        expect(() => JSON.stringify(reported.details)).not.toThrow();
      }
    }
    const getterDetails = new ValidationError('refused');
    Object.defineProperty(getterDetails, 'details', {
      get() {
        throw new Error('no details');
      },
    });
    expect(handlerThrew(getterDetails).details).toEqual({});
  });

  it("details whose getter or Proxy trap throws, on an error of another copy of the package or only shaped like ours, are read as the wire reads them, never as a throw", () => {
    const getter = () => Object.defineProperty({ issues: [] }, 'why', { enumerable: true, get: () => { throw new Error('no why'); } });
    const trap = () => new Proxy({}, { ownKeys: () => { throw new Error('trap'); } });
    const shaped = (details: unknown) => Object.assign(new Error('refused'), { name: 'ValidationError', code: 'VALIDATION_ERROR', details });
    for (const make of [getter, trap]) {
      for (const thrown of [new cjs.ValidationError('refused', { details: make() }), shaped(make())]) {
        // Before: the getter's or the trap's error was thrown here (in-process: INTERNAL_ERROR; elsewhere HANDLER_ERROR "no why").
        const reported = handlerThrew(thrown);
        expect(reported).toBeInstanceOf(ValidationError);
        expect(reported.message).toBe('refused');
        expect(() => JSON.stringify(reported.details)).not.toThrow();
      }
    }
    expect(handlerThrew(shaped(getter())).details).toEqual({ issues: [], why: '[Getter threw: no why]' });
  });
});
