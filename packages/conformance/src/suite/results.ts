import { describe, expect, it } from 'vitest';
import { expectError, expectOk } from '../expect-result.js';
import { BASIC, CJS, GUARDED } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';
import { testPlatform } from '../test-platform.js';

export function describeResults(suite: SuiteContext): void {
  describe('results', () => {
    resultShapeTests(suite);
    boundaryTests(suite);
  });
}

/** What a successful execution returns. */
function resultShapeTests(suite: SuiteContext): void {
  const { make, name } = suite;
  it('runs a handler and returns data with meta', async () => {
    const backend = make();
    expect(backend.type).toBe(name);
    const before = Date.now();
    const pending = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: { args: ['--verbose'], n: 1 } });
    const called = Date.now();
    const result = await pending;
    expectOk(result);
    expect(result.data).toEqual({ args: ['--verbose'], n: 1 });
    // Epoch ms when execute() was called: on the host's clock, not a monotonic one, nor when the handler began.
    expect(result.meta.startedAt).toBeGreaterThanOrEqual(before);
    expect(result.meta.startedAt).toBeLessThanOrEqual(called);
    expect(result.meta).toMatchObject({ backend: name, pluginId: BASIC, handlerId: 'echo', artifacts: [] });
    expect(result.meta.executionId).toMatch(/^[\w-]+$/);
    for (const key of ['durationMs', 'queueWaitMs', 'runMs', 'timeoutMs', 'startedAt'] as const) {
      expect(result.meta[key]).toBeGreaterThanOrEqual(0);
    }
    expect(result.meta.workerId !== undefined || result.meta.pid !== undefined).toBe(true);
  });

  it('counts the handler\'s own work as run time, not as wait (meta.runMs), with nothing queued', async () => {
    const backend = make();
    await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'cpu', input: { ms: 60 } });
    expectOk(result);
    // Relations only (no speed assertion): the handler spun ~60 ms of its run, none of its wait.
    expect(result.meta.runMs).toBeGreaterThan(result.meta.queueWaitMs);
    expect(result.meta.runMs).toBeGreaterThanOrEqual(60);
    expect(result.meta.durationMs).toBeGreaterThanOrEqual(result.meta.runMs);
  });

  it('counts all the time of one refused before its hand-over as queue wait: durationMs is queueWaitMs + runMs', async () => {
    const backend = make();
    // The first executions wait for the backend's plugins to load (stats().queued counts them), then are refused.
    const [unknown, denied] = await Promise.all([
      backend.execute({ pluginId: BASIC, handlerId: 'no-such-handler' }),
      backend.execute({ pluginId: GUARDED, handlerId: 'needs-kv', context: { permissions: {} } }),
    ]);
    expectError(unknown, 'HANDLER_NOT_FOUND');
    expectError(denied, 'PERMISSION_DENIED');
    for (const { meta } of [unknown, denied]) {
      expect(meta.runMs).toBe(0);
      expect(meta.queueWaitMs).toBe(meta.durationMs);
    }
  });

  it('accepts undefined input and a host-chosen execution id', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'context', executionId: 'my-run-1', context: { requestId: 'r-1' } });
    expectOk(result);
    expect(result.meta.executionId).toBe('my-run-1');
    expect(result.data).toMatchObject({ executionId: 'my-run-1', pluginId: BASIC, handlerId: 'context', hasWorkspace: true, signalAborted: false });
  });

  it('hands the context descriptor to the handler unchanged', async () => {
    const backend = make();
    const context = { requestId: 'req-9', tenantId: 't-1', host: { kind: 'cli', argv: ['run', '--x'] }, config: { depth: 2 }, custom: { a: [1, 2] } };
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'context', input: null, context });
    expectOk(result);
    expect((result.data as { context: unknown }).context).toEqual(context);
    // An id the backend made, not the host: the handler's ctx.executionId is the one meta reports.
    expect((result.data as { executionId: unknown }).executionId).toBe(result.meta.executionId);
  });

  it("keeps a context's own `__proto__` keys, as JSON.parse makes them, as it keeps an input's: data, never a prototype or a grant", async () => {
    const backend = make();
    const json = '{"__proto__":{"permissions":{"platform":{"kv":["get"]}}},"host":{"kind":"rest","__proto__":{"a":1}},"config":{"__proto__":{"b":2}},"x":1}';
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'context', input: JSON.parse(json), context: JSON.parse(json) });
    expectOk(result);
    const seen = (result.data as { context: { host: object; config: object } }).context;
    const own = (value: object) => ({ proto: Object.getOwnPropertyDescriptor(value, '__proto__')?.value, plain: Object.getPrototypeOf(value) === Object.prototype });
    expect(own(seen)).toEqual({ proto: { permissions: { platform: { kv: ['get'] } } }, plain: true });
    expect(own(seen.host)).toEqual({ proto: { a: 1 }, plain: true });
    expect(own(seen.config)).toEqual({ proto: { b: 2 }, plain: true });
    expect(Object.keys(seen).sort()).toEqual(['__proto__', 'config', 'host', 'x']);
    // Never taken as the context's prototype: its `permissions` grant nothing.
    const denied = await backend.execute({ pluginId: GUARDED, handlerId: 'needs-kv', context: JSON.parse(json) });
    expectError(denied, 'PERMISSION_DENIED');
  });
}

/** Modules of both kinds, values across the boundary, many executions at once. */
function boundaryTests(suite: SuiteContext): void {
  const { make } = suite;
  it('resolves named exports and CommonJS modules', async () => {
    const backend = make();
    const named = await backend.execute({ pluginId: BASIC, handlerId: 'echo-named', input: 5 });
    expectOk(named);
    expect(named.data).toEqual({ named: true, input: 5 });
    const cjs = await backend.execute({ pluginId: CJS, handlerId: 'default', input: 'x' });
    expectOk(cjs);
    expect(cjs.data).toEqual({ cjs: true, input: 'x' });
    const cjsNamed = await backend.execute({ pluginId: CJS, handlerId: 'named', input: { text: 'hi' } });
    expectOk(cjsNamed);
    expect(cjsNamed.data).toEqual({ shouted: 'HI' });
    // `exports.default = handler` written by hand (no __esModule): module.exports is the object holding it.
    const exportsDefault = await backend.execute({ pluginId: CJS, handlerId: 'exports-default', input: 3 });
    expectOk(exportsDefault);
    expect(exportsDefault.data).toEqual({ via: 'exports.default', input: 3 });
  });

  it('calls the declared export of a module that also exports `then` (import() would take the module for a promise)', async () => {
    const backend = make();
    const esm = await backend.execute({ pluginId: CJS, handlerId: 'thenable', input: 1 }, { timeoutMs: 10_000 });
    expectOk(esm);
    expect(esm.data).toEqual({ thenable: true, input: 1 });
    const cjs = await backend.execute({ pluginId: CJS, handlerId: 'thenable-cjs', input: 2 }, { timeoutMs: 10_000 });
    expectOk(cjs);
    expect(cjs.data).toEqual({ thenable: 'cjs', input: 2 });
  });

  it('copies values across the boundary: Dates, Maps, nested data survive; identity does not', async () => {
    const backend = make();
    const input = { when: new Date(0), map: new Map([['k', 1]]), deep: { list: [1, { x: 'y' }] } };
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input });
    expectOk(result);
    expect(result.data).toEqual(input);
    expect(result.data).not.toBe(input);
  });

  it("a SharedArrayBuffer in the input is shared with the handler, not copied, where one process runs both (in-process, worker-pool): what it writes there is in the host's memory; between processes it is refused, naming where", async () => {
    const backend = make();
    const shared = new SharedArrayBuffer(8);
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'writes-shared', input: { shared } });
    if (suite.capabilities.sharesMemory === true) {
      expectOk(result);
      expect(new Int32Array(shared)[0]).toBe(7);
      return;
    }
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.details).toMatchObject({ what: 'input', path: 'input.shared' });
    expect(new Int32Array(shared)[0]).toBe(0);
  });

  it("a typed array on a SharedArrayBuffer: shared where one process runs both; between processes it arrives as a copy (v8's serialiser copies a view's bytes), and what the handler writes stays there", async () => {
    const backend = make();
    const shared = new SharedArrayBuffer(8);
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'writes-shared', input: { shared: new Int32Array(shared) } });
    expectOk(result);
    expect(new Int32Array(shared)[0]).toBe(suite.capabilities.sharesMemory === true ? 7 : 0);
  });

  it('a Buffer crosses as structured clone makes it, a plain Uint8Array, both ways', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'bytes', input: { bytes: Buffer.from('sent') } });
    expectOk(result);
    const data = result.data as { sawBuffer: boolean; sawUint8Array: boolean; text: string; made: Uint8Array };
    expect(data).toMatchObject({ sawBuffer: false, sawUint8Array: true, text: 'sent' });
    expect(Buffer.isBuffer(data.made)).toBe(false);
    expect(data.made).toBeInstanceOf(Uint8Array);
    expect(new TextDecoder().decode(data.made)).toBe('made here');
  });

  it("a view crosses with its own bytes only: not the rest of its buffer (Node's Buffer pool, a larger ArrayBuffer, a message's bytes), either way", async () => {
    const platform = testPlatform();
    const backend = make({ platform, permissions: { platform: { kv: true } } });
    // Small Buffers are windows on Node's 8 KiB pool, with whatever else the host keeps there.
    await platform.kv.set('view', Buffer.from('from host'));
    const wide = new Uint8Array(new TextEncoder().encode('xxHIDDENxx sent HIDDEN').buffer, 11, 4);
    const results = await Promise.all([
      backend.execute({ pluginId: BASIC, handlerId: 'bytes-from-host', input: { bytes: Buffer.from('pooled'), fromHost: 'view' } }),
      backend.execute({ pluginId: BASIC, handlerId: 'bytes', input: { bytes: wide } }),
    ]);
    const [pooled, sliced] = results.map((result) => {
      expectOk(result);
      return result.data as { text: string; bufferBytes: number; fromHost?: { text: string; bufferBytes: number }; made: Uint8Array };
    });
    expect(pooled).toMatchObject({ text: 'pooled', bufferBytes: 6, fromHost: { text: 'from host', bufferBytes: 9 } });
    expect(sliced).toMatchObject({ text: 'sent', bufferBytes: 4 });
    for (const data of [pooled!, sliced!]) expect(data.made.buffer.byteLength).toBe(9);
  });

  it('runs many executions concurrently with distinct ids', async () => {
    // Two slots at least, whatever the machine's core count, for the pair below.
    const backend = make({ maxConcurrency: 2, permissions: { platform: { meet: true } } });
    // Each `meet` returns only once the other one is inside its handler too: they ran at the same
    // time. A backend that ran executions one after another would leave the first waiting, and fail it.
    const pair = [1, 2].map(() => backend.execute({ pluginId: BASIC, handlerId: 'meet', input: { group: 'pair', size: 2 } }));
    const echoes = Array.from({ length: 22 }, (_, i) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i }));
    const met = await Promise.all(pair);
    for (const result of met) {
      expectOk(result);
      expect(result.data).toEqual({ met: 2 });
    }
    const echoed = await Promise.all(echoes);
    echoed.forEach((r, i) => {
      expectOk(r);
      expect(r.data).toBe(i);
    });
    expect(new Set([...met, ...echoed].map((r) => r.meta.executionId)).size).toBe(24);
  });
}
