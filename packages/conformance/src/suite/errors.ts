import { ExecutionError, HandlerError, deserializeError, isExecutionError, serializeError } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { expectError } from '../expect-result.js';
import { BASIC, HOSTILE } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';

export function describeErrors(suite: SuiteContext): void {
  describe('errors', () => {
    thrownValueTests(suite);
  });
}

/** What a handler throws comes back whole, as HANDLER_ERROR. */
function thrownValueTests(suite: SuiteContext): void {
  const { make } = suite;
  it('returns a thrown Error subclass as HANDLER_ERROR with name, message, stack, own props and cause chain', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'throws' });
    expectError(result, 'HANDLER_ERROR');
    const error = result.error;
    expect(error).toBeInstanceOf(HandlerError);
    expect(isExecutionError(error)).toBe(true);
    expect(error.message).toBe('quota exceeded');
    expect(error.stack).toContain('throws.mjs');
    expect(error.details).toMatchObject({ name: 'QuotaError' });
    const thrown = error.cause as Error & { quota: number; used: number; tags: string[] };
    expect(thrown).toBeInstanceOf(Error);
    expect(thrown.name).toBe('QuotaError');
    expect(thrown.quota).toBe(10);
    expect(thrown.tags).toEqual(['a', 'b']);
    const middle = thrown.cause as Error;
    expect(middle.message).toBe('write failed');
    const rootCause = middle.cause as Error & { errno: number };
    expect(rootCause).toBeInstanceOf(TypeError);
    expect(rootCause.message).toBe('disk is read-only');
    expect(rootCause.errno).toBe(-30);
    // …and it survives the wire again, as the host would send it on.
    const again = deserializeError(JSON.parse(JSON.stringify(serializeError(error))));
    expect(again).toBeInstanceOf(HandlerError);
    expect(((again.cause as Error).cause as Error).cause).toBeInstanceOf(TypeError);
  });

  it.each(['message', 'name', 'cause'])("an Error whose %s getter throws keeps its stack's frames and the fields that can be read, and says what could not", async (field) => {
    const result = await make().execute({ pluginId: HOSTILE, handlerId: 'throw-value', input: { kind: `unreadable-${field}` } });
    expectError(result, 'HANDLER_ERROR');
    const unread = `[Getter threw: no ${field} for you]`;
    // In-process the cause is the thrown error itself, whose field still throws when read: only the others are read here.
    const cause = result.error.cause as Error & { detail?: unknown };
    for (const stack of [result.error.stack, cause.stack]) {
      expect(stack).toContain('throw-value.mjs');
      expect(stack!.split('\n', 1)[0]).toBe(field === 'message' ? `UnreadableError: ${unread}` : field === 'name' ? `${unread}: the message` : 'UnreadableError: the message');
    }
    expect(cause.detail).toBe('kept');
    if (field === 'message') {
      expect(result.error.message).toBe(`The handler threw UnreadableError, whose message could not be read: ${unread}`);
      expect(result.error.details).toEqual({ name: 'UnreadableError' });
    } else {
      expect(result.error.message).toBe('the message');
      expect(result.error.details).toEqual({ name: field === 'name' ? unread : 'UnreadableError' });
    }
  });

  it('cuts a message of 100,000 characters once, to 64 KiB with the count of what was left out, however many hops it makes', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'throws', input: { message: 'm'.repeat(100_000) } });
    expectError(result, 'HANDLER_ERROR');
    for (const message of [result.error.message, (result.error.cause as Error).message]) {
      // The thrown error itself stays whole where nothing has to carry it (in-process).
      if (message.length === 100_000) continue;
      expect(message.length).toBeLessThanOrEqual(64 * 1024);
      const cut = /^(m*)… \[(\d+) more chars\]$/.exec(message);
      expect(cut, message.slice(-40)).not.toBeNull();
      expect(cut![1]!.length + Number(cut![2])).toBe(100_000);
    }
    // The error's own stack, whose first line is that message, is cut as the message is: a host
    // that logs `error.stack` (pino, Sentry) writes 64 KiB on every backend, in-process too.
    expect(result.error.stack!.length).toBeLessThanOrEqual(64 * 1024);
    // Not between the halves of a surrogate pair: 50,000 emoji are cut before one, not inside it.
    const emoji = await backend.execute({ pluginId: BASIC, handlerId: 'throws', input: { message: '😀'.repeat(50_000) } });
    expectError(emoji, 'HANDLER_ERROR');
    expect(emoji.error.message.length).toBeLessThanOrEqual(64 * 1024);
    expect(emoji.error.message).toMatch(/^(😀)+… \[\d+ more chars\]$/u);
  });

  it.each([
    ['TIMEOUT', 'TimeoutError'],
    ['WORKER_CRASHED', 'WorkerCrashedError'],
    ['QUEUE_FULL', 'QueueFullError'],
    ['SHUTTING_DOWN', 'ShuttingDownError'],
    ['ABORTED', 'AbortedError'],
  ])('a handler that throws a %s of its own making gets HANDLER_ERROR naming it: only the backend reports what happened to an execution', async (code, name) => {
    const backend = make();
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'forged-error', input: { code, name } });
    expectError(result, 'HANDLER_ERROR');
    expect(result.error.details).toMatchObject({ name, code });
    expect(result.error.message).toContain(`forged ${code}`);
    expect((result.error.cause as { code?: unknown }).code).toBe(code);
  });

  it.each([
    ['VALIDATION_ERROR', 'ValidationError', { issues: 5, phase: 7, note: 'kept' }, { note: 'kept' }],
    ['PERMISSION_DENIED', 'PermissionDeniedError', { phase: 'preflight', missing: ['network'], resource: { evil: true } }, { missing: ['network'] }],
  ])('a %s a handler reports keeps the details its code\'s type allows, and no more', async (code, name, details, kept) => {
    const backend = make();
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'forged-error', input: { code, name, details } });
    expectError(result, code as 'VALIDATION_ERROR');
    expect(result.error).toBeInstanceOf(ExecutionError);
    expect(result.error.details).toEqual(kept);
  });

  it.each([
    ['VALIDATION_ERROR', 'ValidationError'],
    ['HANDLER_ERROR', 'HandlerError'],
  ])('a %s a handler reports with a BigInt, a Map and a cycle in its details: the host gets them as JSON can write them, on every backend', async (code, name) => {
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = loop;
    const details = { issues: [{ path: 'a', message: 'm', size: 2n }], bytes: 10n, seen: new Map([[1, 2]]), loop };
    const result = await make().execute({ pluginId: HOSTILE, handlerId: 'forged-error', input: { code, name, details } });
    expectError(result, code as 'VALIDATION_ERROR');
    // A host that answers `{ code, details }` as JSON (an HTTP 400 body) must not throw on one backend alone.
    expect(() => JSON.stringify(result.error.details)).not.toThrow();
    expect(result.error.details).toEqual({ issues: [{ path: 'a', message: 'm', size: '2n' }], bytes: '10n', seen: {}, loop: { a: 1, self: '[Circular]' } });
  });

  it('keeps a thrown error\'s own code that is not a string and its details, on its cause', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'forged-error', input: { code: 14, name: 'ServiceError', details: 'svc down' } });
    expectError(result, 'HANDLER_ERROR');
    expect(result.error.cause).toMatchObject({ name: 'ServiceError', code: 14, details: 'svc down' });
  });

  it('an event that cannot be sent is VALIDATION_ERROR naming where in it, on every backend', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'emits-uncloneable' });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toContain('ctx.emit() event cannot be sent across the execution boundary');
    expect(result.error.details).toMatchObject({ path: 'event.nested.f', reason: 'not-serializable' });
  });

  it.each([
    ['PERMISSION_DENIED', 'PermissionDeniedError'],
    ['VALIDATION_ERROR', 'ValidationError'],
  ])('a handler that lets a %s escape reports that code, as one of our errors (instanceof works, details is an object) even when it was only shaped like one', async (code, name) => {
    const backend = make();
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'forged-error', input: { code, name } });
    expectError(result, code as 'PERMISSION_DENIED');
    expect(result.error.message).toBe(`forged ${code}`);
    const bare = await backend.execute({ pluginId: HOSTILE, handlerId: 'forged-error', input: { code, name, details: false } });
    expectError(bare, code as 'PERMISSION_DENIED');
    expect(bare.error).toBeInstanceOf(ExecutionError);
    expect(bare.error.name).toBe(name);
    expect(bare.error.details).toEqual({});
  });

  it.each([
    ['string', 'plain string'],
    ['number', '42'],
    ['undefined', 'undefined'],
    ['null', 'null'],
    ['object', '{}'],
    ['circular', 'Circular'],
  ])('turns a thrown %s into HANDLER_ERROR describing it', async (kind, fragment) => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'throws-non-error', input: { kind } });
    expectError(result, 'HANDLER_ERROR');
    expect(result.error.message).toContain(fragment);
  });

  it("a thrown plain object nested 40 levels deep: details.thrown.value is cut at the same depth on every backend", async () => {
    const result = await make().execute({ pluginId: BASIC, handlerId: 'throws-non-error', input: { kind: 'deep' } });
    expectError(result, 'HANDLER_ERROR');
    let value = (result.error.details as { thrown: { type: string; value: unknown } }).thrown.value;
    let depth = 0;
    for (; value !== null && typeof value === 'object'; depth++) value = (value as { o: unknown }).o;
    expect([depth, value]).toEqual([5, '[Truncated]']);
  });
}
