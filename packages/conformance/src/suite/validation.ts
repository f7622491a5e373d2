import { readdir } from 'node:fs/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import { isExecutionError } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { expectError, expectOk } from '../expect-result.js';
import { BASIC } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';
import { cloneRefusesUrl } from '../node-differences.js';
import { pluginFolderTests } from './plugin-folders.js';

export function describeValidation(suite: SuiteContext): void {
  describe('validation and resolution', () => {
    requestValidationTests(suite);
    resolutionTests(suite);
    pluginFolderTests(suite);
  });
}

/** Bad input, requests and options are answered, never thrown. */
function requestValidationTests(suite: SuiteContext): void {
  const { make } = suite;
  it('validates handler input with its schema and names the path', async () => {
    const backend = make();
    const good = await backend.execute({ pluginId: BASIC, handlerId: 'validated', input: { name: 'kb', count: 2 } });
    expectOk(good);
    expect(good.data).toEqual({ greeting: 'hello kbhello kb' });
    const bad = await backend.execute({ pluginId: BASIC, handlerId: 'validated', input: { name: 3 } });
    expectError(bad, 'VALIDATION_ERROR');
    expect(bad.error.message).toContain('input.name');
  });

  it("an input schema that throws while it validates, or is no schema, is the handler's error (HANDLER_ERROR, what it threw as the cause), on every backend; the body never runs", async () => {
    const result = await make().execute({ pluginId: BASIC, handlerId: 'schema-throws', input: { any: 1 } });
    expectError(result, 'HANDLER_ERROR');
    expect(result.error.message).toBe('validator exploded');
    expect(result.error.cause).toMatchObject({ name: 'TypeError', message: 'validator exploded' });
    // An asynchronous one is refused, and the promise it returned, which rejects, is not left unhandled where it runs.
    const asynchronous = await make().execute({ pluginId: BASIC, handlerId: 'schema-async-rejects', input: { any: 1 } });
    expectError(asynchronous, 'HANDLER_ERROR');
    expect(asynchronous.error.message).toContain('its input schema is asynchronous');
    // Not a schema at all: the plugin's bug too, not the caller's input.
    const none = await make().execute({ pluginId: BASIC, handlerId: 'schema-not-a-schema', input: { any: 1 } });
    expectError(none, 'HANDLER_ERROR');
    expect(none.error.message).toBe('Handler "schema-not-a-schema" of plugin "@conformance/basic": its "input" is not a schema (a zod schema, or one with ~standard.validate): an object with args');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expectOk(await make().execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });

  it('never rejects: malformed requests resolve VALIDATION_ERROR naming the field', async () => {
    const backend = make();
    for (const request of [undefined, null, 42, 'x', {}, { pluginId: BASIC }, { pluginId: 1, handlerId: 'echo' }]) {
      const result = await backend.execute(request as never);
      expectError(result, 'VALIDATION_ERROR');
    }
    const missing = await backend.execute({ pluginId: BASIC } as never);
    expectError(missing, 'VALIDATION_ERROR');
    expect(missing.error.message).toContain('handlerId');
    const hostile = new Proxy(
      {},
      {
        get() {
          throw new Error('getter trap');
        },
        ownKeys() {
          throw new Error('ownKeys trap');
        },
      },
    );
    const fromProxy = await backend.execute(hostile as never);
    expect(fromProxy.ok).toBe(false);
    expect(isExecutionError((fromProxy as { error: unknown }).error)).toBe(true);
    const fromProxyOptions = await backend.execute({ pluginId: BASIC, handlerId: 'echo' }, hostile as never);
    expect(fromProxyOptions.ok).toBe(false);
    const badId = await backend.execute({ pluginId: BASIC, handlerId: 'echo', executionId: '../../etc' });
    expectError(badId, 'VALIDATION_ERROR');
    expect(badId.error.message).toContain('executionId');
  });

  it('refuses a misspelt request field, naming it (the handler would run without its input), and points an execute() option to its place', async () => {
    const backend = make();
    const misspelt = await backend.execute({ pluginId: BASIC, handlerId: 'echo', inptu: { x: 1 } } as never);
    expectError(misspelt, 'VALIDATION_ERROR');
    expect(misspelt.error.message).toContain('inptu: unknown field; did you mean "input"?');
    const option = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, timeoutMs: 100 } as never);
    expectError(option, 'VALIDATION_ERROR');
    expect(option.error.message).toContain('timeoutMs: not a field of the request: it is an option of execute() (its second argument)');
  });

  it('refuses an executionId that an unfinished execution has, naming it; once that one finished, the id is free again', async () => {
    const backend = make();
    // Its own each run, as a caller's job id would be.
    const id = `chosen-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    const first = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 200 }, executionId: id });
    const second = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2, executionId: id });
    expectError(second, 'VALIDATION_ERROR');
    expect(second.error.message).toContain(`executionId "${id}" belongs to an execution of this backend that has not finished`);
    expect(second.error.details).toMatchObject({ path: 'executionId', reason: 'duplicate' });
    const done = await first;
    expectOk(done);
    expect(done.meta.executionId).toBe(id);
    const again = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 3, executionId: id });
    expectOk(again);
    expect(again.data).toBe(3);
  });

  it("a signal-like object whose addEventListener throws fails the execution with what it threw (INTERNAL_ERROR), and leaves no workspace behind", async () => {
    const backend = make();
    // Its plugins loaded: the signal is first listened to while the workspace is being made.
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'warm' }));
    const signal = { aborted: false, reason: undefined, addEventListener: () => { throw new Error('the host signal refused a listener'); }, removeEventListener: () => {} };
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { signal: signal as unknown as AbortSignal });
    expectError(result, 'INTERNAL_ERROR');
    expect(result.error.message).toContain('the host signal refused a listener');
    expect(await readdir(suite.root())).toEqual([]);
    // Given again, it is refused again: not taken for a signal listened to, whose abort would never be heard.
    const again = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 }, { signal: signal as unknown as AbortSignal });
    expectError(again, 'INTERNAL_ERROR');
    expect(await readdir(suite.root())).toEqual([]);
  });

  it('a signal-like object whose addEventListener throws leaves nothing running without a workspace either: its execution is not kept until its time limit', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const backend = make({ workspace: false });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'warm' }));
    const signals: Array<WeakRef<object>> = [];
    for (let i = 0; i < 50; i++) {
      const signal = { aborted: false, reason: undefined, addEventListener: () => { throw new Error('the host signal refused a listener'); }, removeEventListener: () => {} };
      signals.push(new WeakRef(signal));
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i }, { signal: signal as unknown as AbortSignal, timeoutMs: 600_000 });
      expectError(result, 'INTERNAL_ERROR');
      expect(result.error.message).toContain('the host signal refused a listener');
    }
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    // Before, each stayed in the backend's running list, its 10-minute time limit pending, and held its signal.
    expect(signals.filter((ref) => ref.deref() !== undefined).length).toBeLessThanOrEqual(5);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });

  it('rejects bad execute() options with VALIDATION_ERROR', async () => {
    const backend = make();
    for (const options of [{ timeoutMs: -1 }, { timeoutMs: Number.NaN }, { signal: {} }, { onLog: 'x' }]) {
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' }, options as never);
      expectError(result, 'VALIDATION_ERROR');
    }
    const asText = await backend.execute({ pluginId: BASIC, handlerId: 'echo' }, { timeoutMs: '5000' } as never);
    expectError(asText, 'VALIDATION_ERROR');
    expect(asText.error.message).toContain('got the string "5000"');
    const notObject = await backend.execute({ pluginId: BASIC, handlerId: 'echo' }, 'fast' as never);
    expectError(notObject, 'VALIDATION_ERROR');
    expect(notObject.error.message).toBe('execute() options must be an object, got string');
    expect(notObject.error.details).toMatchObject({ phase: 'options' });
    const array = await backend.execute({ pluginId: BASIC, handlerId: 'echo' }, [] as never);
    expectError(array, 'VALIDATION_ERROR');
    expect(array.error.message).toBe('execute() options must be an object, got an array');
    // The ids given as two strings (plain JavaScript): the request is the mistake, not the options.
    const positional = await backend.execute(BASIC as never, 'echo' as never);
    expectError(positional, 'VALIDATION_ERROR');
    expect(positional.error.message).toMatch(/^Invalid execution request:\n  - \(root\): must be an object: \{ pluginId, handlerId/);
  });
}

/** Unknown plugins, handlers, modules, and values that cannot cross a boundary. */
function resolutionTests(suite: SuiteContext): void {
  const { make } = suite;
  it('reports unknown plugins and handlers with what exists', async () => {
    const backend = make();
    const plugin = await backend.execute({ pluginId: '@nobody/nothing', handlerId: 'run' });
    expectError(plugin, 'HANDLER_NOT_FOUND');
    expect(plugin.error.message).toContain('@nobody/nothing');
    expect(plugin.error.message).toContain(BASIC);
    const handler = await backend.execute({ pluginId: BASIC, handlerId: 'nope' });
    expectError(handler, 'HANDLER_NOT_FOUND');
    expect(handler.error.message).toContain('echo');
    for (const sneaky of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      expectError(await backend.execute({ pluginId: BASIC, handlerId: sneaky }), 'HANDLER_NOT_FOUND');
    }
  });

  it('reports a missing module or export as HANDLER_NOT_FOUND, a module that throws on load as HANDLER_ERROR', async () => {
    const backend = make();
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'missing-module' }), 'HANDLER_NOT_FOUND');
    const missingExport = await backend.execute({ pluginId: BASIC, handlerId: 'missing-export' });
    expectError(missingExport, 'HANDLER_NOT_FOUND');
    expect(missingExport.error.message).toContain('nope');
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'not-a-handler' }), 'HANDLER_NOT_FOUND');
    const atLoad = await backend.execute({ pluginId: BASIC, handlerId: 'throws-at-load' });
    expectError(atLoad, 'HANDLER_ERROR');
    expect(atLoad.error.message).toContain('broken at import time');
    // The backend keeps serving.
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
  });

  it.runIf(cloneRefusesUrl())('a URL in a result (Node 22 and later do not clone one) is VALIDATION_ERROR naming where, on every backend, not an empty object', async () => {
    const result = await make().execute({ pluginId: BASIC, handlerId: 'returns-unserializable', input: { kind: 'url' } });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.details).toMatchObject({ path: 'result.at.link' });
  });

  it('rejects a result that cannot cross a boundary with VALIDATION_ERROR', async () => {
    const backend = make();
    const fn = await backend.execute({ pluginId: BASIC, handlerId: 'returns-unserializable' });
    expectError(fn, 'VALIDATION_ERROR');
    expect(fn.error.message).toContain('cannot be sent across the execution boundary');
    // What refused it is the same kind on every backend (node:v8's serialiser says a plain Error).
    expect((fn.error.cause as Error | undefined)?.name).toBe('DataCloneError');
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'returns-unserializable', input: { kind: 'symbol' } }), 'VALIDATION_ERROR');
    // An Error that is its own cause: Node 20's v8 writes it and cannot read it back, which is the
    // value's fault, not a crash (before, WORKER_CRASHED 'protocol' on subprocess, where threads
    // said VALIDATION_ERROR); Node 22 and later read it back, and it arrives.
    const selfCause = await backend.execute({ pluginId: BASIC, handlerId: 'returns-unserializable', input: { kind: 'self-cause' } });
    if (selfCauseClones()) {
      expectOk(selfCause);
      expect((selfCause.data as { error: Error }).error.message).toBe('its own cause');
    } else {
      expectError(selfCause, 'VALIDATION_ERROR');
    }
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });

  it("a context holding shared memory is shared in one process, and refused by a wire between processes (subprocess, queue) naming the context and where in it, not the input", async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'context', input: { fine: true }, context: { tenant: { scratch: new SharedArrayBuffer(4) } } });
    if (suite.capabilities.sharesMemory === true) {
      expectOk(result);
      return;
    }
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toMatch(/^context cannot be sent across the execution boundary: .*SharedArrayBuffer.* \(at context\.tenant\.scratch\)$/);
    expect(result.error.details).toMatchObject({ what: 'context', reason: 'not-serializable', path: 'context.tenant.scratch' });
    // In the input, it is the input's.
    const inInput = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: { list: [new SharedArrayBuffer(4)] } });
    expectError(inInput, 'VALIDATION_ERROR');
    expect(inInput.error.details).toMatchObject({ what: 'input', path: 'input.list[0]' });
  });

  it('rejects an input that cannot cross a boundary with VALIDATION_ERROR naming where in it', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: { list: [1, { fn: () => 1 }] } });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toMatch(/^input cannot be sent across the execution boundary: .* \(at input\.list\[1\]\.fn\)$/);
    expect(result.error.details).toMatchObject({ what: 'input', reason: 'not-serializable', path: 'input.list[1].fn' });
    // A getter that throws is named at its key; a Proxy whose traps throw, where it is.
    const getter = await backend.execute({
      pluginId: BASIC,
      handlerId: 'echo',
      input: {
        ok: 1,
        get boom() {
          throw new Error('no');
        },
      },
    });
    expectError(getter, 'VALIDATION_ERROR');
    expect(getter.error.details).toMatchObject({ what: 'input', reason: 'not-serializable', path: 'input.boom' });
    const trap = new Proxy({}, { ownKeys: () => { throw new Error('trap'); } });
    const proxied = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: { nested: [trap] } });
    expectError(proxied, 'VALIDATION_ERROR');
    expect(proxied.error.details).toMatchObject({ path: 'input.nested[0]' });
    const topProxy = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: new Proxy({ a: 1 }, {}) });
    expectError(topProxy, 'VALIDATION_ERROR');
    expect(topProxy.error.details).toMatchObject({ path: 'input' });
  });

  it('a request refused for its input, its context or an option still names what the caller named in meta', async () => {
    const backend = make();
    const named = { pluginId: BASIC, handlerId: 'echo' };
    const refused = [
      await backend.execute({ ...named, executionId: 'mine-input', input: { fn: () => 1 } }),
      await backend.execute({ ...named, executionId: 'mine-context', input: 1, context: { s: Symbol('x') } as never }),
      await backend.execute({ ...named, executionId: 'mine-option', input: 1 }, { timeout: 5 } as never),
    ];
    expect(refused.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['VALIDATION_ERROR', 'VALIDATION_ERROR', 'VALIDATION_ERROR']);
    expect(refused.map((r) => [r.meta.executionId, r.meta.pluginId, r.meta.handlerId])).toEqual([
      ['mine-input', BASIC, 'echo'],
      ['mine-context', BASIC, 'echo'],
      ['mine-option', BASIC, 'echo'],
    ]);
    // An id refused as unsafe is not given back: meta gets one of the backend's.
    const unsafe = await backend.execute({ ...named, executionId: '../up', input: 1 });
    expectError(unsafe, 'VALIDATION_ERROR');
    expect(unsafe.meta.executionId).not.toBe('../up');
    expect(unsafe.meta.executionId).not.toBe('');
  });

  it('rejects an input nested too deeply to serialise with VALIDATION_ERROR (reason too-deep), not INTERNAL_ERROR', async () => {
    const backend = make();
    const root: Record<string, unknown> = {};
    let level = root;
    for (let i = 0; i < 20_000; i++) level = level.a = {};
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: root });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.details).toMatchObject({ what: 'input', reason: 'too-deep' });
    expect(result.error.message).toContain('nested too deeply to be serialised');
  });
}

/** Whether this Node's structured clone reads back an Error that is its own cause (Node 22 and later). */
function selfCauseClones(): boolean {
  const error = new Error('its own cause');
  error.cause = error;
  try {
    structuredClone(error);
    return true;
  } catch {
    return false;
  }
}
