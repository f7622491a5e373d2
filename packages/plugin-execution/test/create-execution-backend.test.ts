import { describeConformance, expectError, expectOk, fixturePlugins, installTestSdk, testPlatform, total, BASIC } from '@kb-labs/plugin-execution-conformance';
import { ValidationError, createExecutionBackend } from '@kb-labs/plugin-execution';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { lazyExecutionBackend } from '@kb-labs/plugin-execution-core/host-kit';
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

describe('createExecutionBackend', () => {
  it('returns a backend at once, not a promise', () => {
    const backend = createExecutionBackend({ type: 'in-process', workspace: false });
    expect(typeof (backend as unknown as { then?: unknown }).then).toBe('undefined');
    expect(backend.type).toBe('in-process');
  });

  it("an own __proto__ key (a JSON config's) is refused by the backend by name, as its class refuses it, not dropped", async () => {
    const options = JSON.parse('{"type":"in-process","workspace":false,"__proto__":{"defaultTimeoutMs":50}}') as Record<string, unknown>;
    expect(() => new InProcessBackend(options)).toThrow(/__proto__: unknown option/);
    // Before: loaded and ran, the misplaced defaultTimeoutMs ignored without a word.
    await expect(createExecutionBackend(options).ready()).rejects.toThrow(/__proto__: unknown option/);
  });

  it('every backend class refuses null options as it refuses any other non-object (a setting read as null), naming what they must be', async () => {
    const classes = [
      (await import('@kb-labs/plugin-execution-in-process')).InProcessBackend,
      (await import('@kb-labs/plugin-execution-worker-pool')).WorkerPoolBackend,
      (await import('@kb-labs/plugin-execution-subprocess')).SubprocessBackend,
      (await import('@kb-labs/plugin-execution-queue')).QueueBackend,
    ];
    for (const Backend of classes) {
      // Before: accepted as no options (in-process, queue), or a TypeError reading a property of null.
      expect(() => new Backend(null as never)).toThrow(/backend options:\n {2}- \(root\): must be an object, got null$/);
    }
  });

  it('defaults to in-process', async () => {
    await using backend = createExecutionBackend({ plugins: [fixturePlugins.basic], workspace: false });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
    expectOk(result);
    expect(result.meta.backend).toBe('in-process');
  });

  it('throws ValidationError synchronously for an unknown type or a non-object', () => {
    expect(() => createExecutionBackend({ type: 'docker' as never })).toThrow(ValidationError);
    expect(() => createExecutionBackend({ type: 'docker' as never })).toThrow(/type: must be one of "in-process", "worker-pool", "subprocess"/);
    expect(() => createExecutionBackend({ type: 'docker' as never })).not.toThrow(/did you mean/);
    // A misspelt type names the one it is closest to.
    expect(() => createExecutionBackend({ type: 'worker-pol' as never })).toThrow(/got "worker-pol"; did you mean "worker-pool"\?/);
    expect(() => createExecutionBackend({ type: 'subproces' as never })).toThrow(/did you mean "subprocess"\?/);
    expect(() => createExecutionBackend(null as never)).toThrow(ValidationError);
    // An array is no options object (before, the in-process backend, which isolates nothing).
    expect(() => createExecutionBackend([] as never)).toThrow('createExecutionBackend() needs an options object, got an array');
    // A getter that throws is the caller's mistake, named (before, its own error escaped as it was).
    const throwing = (key: string) => Object.defineProperty({ type: 'in-process' }, key, { enumerable: true, get: () => { throw new Error('no setting'); } });
    for (const key of ['type', 'plugins']) {
      expect(() => createExecutionBackend(throwing(key) as never)).toThrow(ValidationError);
      expect(() => createExecutionBackend(throwing(key) as never)).toThrow(`createExecutionBackend() could not read option "${key}": no setting`);
    }
    // One that throws what no string can be made of (a null-prototype object), named all the same (before, a TypeError).
    const unprintable = Object.defineProperty({ type: 'in-process' }, 'plugins', { enumerable: true, get: () => { throw Object.create(null); } });
    expect(() => createExecutionBackend(unprintable as never)).toThrow('createExecutionBackend() could not read option "plugins": a non-Error object: {}');
    // Inside the options whose paths are made absolute at the call (plugins, workspace.root) as well.
    const inside: Array<[string, Record<string, unknown>]> = [
      ['workspace', { workspace: { get root(): string { throw new Error('no root'); } } }],
      ['plugins', { plugins: new Proxy(['a'], { get: (target, key) => { if (key === '0') throw new Error('no plugin'); return Reflect.get(target, key); } }) }],
      ['plugins', { plugins: [{ get root(): string { throw new Error('no root'); }, manifest: {} }] }],
    ];
    for (const [path, options] of inside) {
      let refused: unknown;
      try {
        createExecutionBackend({ type: 'in-process', ...options } as never);
      } catch (error) {
        refused = error;
      }
      expect(refused).toMatchObject({ code: 'VALIDATION_ERROR', details: { path }, message: expect.stringMatching(new RegExp(`^Option "${path}" could not be read: no `)) });
    }
    // A Proxy whose ownKeys trap throws, as a getter that throws (before, its own error escaped).
    const keyless = new Proxy({ type: 'in-process' }, { ownKeys: () => { throw new Error('no keys'); } });
    expect(() => createExecutionBackend(keyless as never)).toThrow("createExecutionBackend() could not read its options' keys: no keys");
    expect(() => createExecutionBackend({ type: null as never })).toThrow(/type: must be one of "in-process", "worker-pool", "subprocess", "queue", got null/);
    // A type no JSON can say is refused as any other, naming it (before, a TypeError or the toJSON's own error escaped; a symbol was "got undefined").
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const unsaid: Array<[unknown, string]> = [
      [1n, 'got the BigInt 1n'],
      [circular, 'got an object'],
      [{ toJSON: () => { throw new Error('no JSON'); } }, 'got an object'],
      [Symbol('in-process'), 'got a symbol'],
      [() => 'in-process', 'got a function'],
      ['x'.repeat(10_000), `got "${'x'.repeat(40)}…"`],
    ];
    for (const [type, got] of unsaid) {
      let refused: unknown;
      try {
        createExecutionBackend({ type } as never);
      } catch (error) {
        refused = error;
      }
      expect(refused).toBeInstanceOf(ValidationError);
      expect(refused).toMatchObject({ details: { issues: [{ path: 'type', message: `must be one of "in-process", "worker-pool", "subprocess", "queue", ${got}` }] } });
    }
    // A setting that is not set (process.env.BACKEND) does not fall back to the backend that isolates nothing.
    expect(() => createExecutionBackend({ type: undefined })).toThrow(/type: is undefined \(a setting that is not set\?\): name one of "in-process"/);
    expect(createExecutionBackend({}).type).toBe('in-process');
    // Nor does a misspelt "type" key.
    for (const key of ['typ', 'Type', 'tpye', 'types']) {
      expect(() => createExecutionBackend({ [key]: 'worker-pool' } as never)).toThrow(new RegExp(`type: is missing, and "${key}" is not an option: did you mean "type"\\?`));
    }
  });

  it('its methods work taken off it, before and after its backend loads: const { execute, ready, shutdown } = backend', async () => {
    const backend = createExecutionBackend({ plugins: [fixturePlugins.basic], workspace: false });
    const { execute, ready, stats, shutdown } = backend;
    const first = await execute({ pluginId: BASIC, handlerId: 'echo', input: 'before load' });
    expectOk(first);
    await ready();
    const second = await Promise.resolve({ pluginId: BASIC, handlerId: 'echo', input: 'loaded' }).then(backend.execute);
    expectOk(second);
    expect(second.data).toBe('loaded');
    expect((await stats()).total).toBe(2);
    await shutdown();
    expectError(await execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
  });

  it.each([
    ['a backend class', () => new InProcessBackend({ workspace: false })],
    ['createExecutionBackend', () => createExecutionBackend({ workspace: false })],
  ])('%s: its plugin methods and onShutdown work taken off it too: const { registerPlugin, reloadPlugin, unregisterPlugin, onShutdown } = backend', async (_what, make) => {
    const backend = make();
    const { registerPlugin, reloadPlugin, unregisterPlugin, onShutdown, shutdown } = backend;
    // Before (one left off the bound list): a TypeError about a private field, from a method that promises a result.
    expect((await registerPlugin(fixturePlugins.basic)).id).toBe(BASIC);
    expect((await reloadPlugin(BASIC)).generation).toBe(1);
    expect(await unregisterPlugin(BASIC)).toBe(true);
    let heard = 0;
    onShutdown(() => {
      heard++;
    });
    await shutdown();
    expect(heard).toBe(1);
  });

  it("a backend's methods taken off it still go through its class's prototype: a spy or an instrumentation wrapping it later is called; dispose works taken off too", async () => {
    const backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace: false });
    const { stats } = backend;
    const original = InProcessBackend.prototype.stats;
    let wrapped = 0;
    InProcessBackend.prototype.stats = function (this: InProcessBackend) {
      wrapped++;
      return original.call(this);
    };
    try {
      await backend.stats();
      await stats();
      expect(wrapped).toBe(2);
    } finally {
      InProcessBackend.prototype.stats = original;
    }
    // One of them copied onto the prototype does not call itself.
    const health = InProcessBackend.prototype.health;
    InProcessBackend.prototype.health = backend.health;
    try {
      expect((await backend.health()).backend).toBe('in-process');
    } finally {
      InProcessBackend.prototype.health = health;
    }
    const dispose = backend[Symbol.asyncDispose];
    await dispose();
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
  });

  it('reports bad backend options on every execution, in health() and from ready(); stats() still answers, as a backend that runs nothing', async () => {
    const backend = createExecutionBackend({ type: 'in-process', maxQueue: -5 });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toContain('maxQueue');
    // Each result its own error (before, one object: a host annotating one changed every later one).
    const again = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expectError(again, 'VALIDATION_ERROR');
    expect(again.error).not.toBe(result.error);
    expect(again.error.details).not.toBe(result.error.details);
    expect(again.error.message).toBe(result.error.message);
    expect(again.error.details).toEqual(result.error.details);
    const health = await backend.health();
    // Before: 'starting', as though it might come up; a failed load is never retried.
    expect(health).toMatchObject({ ok: false, state: 'closed' });
    expect(health.problems.join('\n')).toContain('maxQueue');
    await expect(backend.ready()).rejects.toThrow(/maxQueue/);
    // Before: stats() rejected, so a monitor polling it had a rejection to handle. Its two refusals counted (before: total 0).
    expect(await backend.stats()).toMatchObject({ backend: 'in-process', state: 'closed', active: 0, queued: 0, maxQueue: 0, total: 2, byOutcome: { ok: 0, VALIDATION_ERROR: 2 } });
    await backend.shutdown();
  });

  it('a failed load: each ready() (and registerPlugin, reloadPlugin) rejects with its own error; one the host annotates changes no later ready() nor execute()', async () => {
    const backend = createExecutionBackend({ type: 'in-process', maxQueue: -5 });
    const first = (await backend.ready().catch((error: unknown) => error)) as ValidationError;
    expect(first).toBeInstanceOf(ValidationError);
    expect(first.message).toContain('maxQueue');
    const message = first.message;
    // A start-up that says where it failed, on the error it was given.
    first.message = `starting the job runner: ${first.message}`;
    (first.details as Record<string, unknown>).component = 'job-runner';
    const second = (await backend.ready().catch((error: unknown) => error)) as ValidationError;
    // Before: the same object, annotated (and every execute() result copied from it said so too).
    expect(second).not.toBe(first);
    expect(second).toBeInstanceOf(ValidationError);
    expect(second.message).toBe(message);
    expect(second.details).not.toHaveProperty('component');
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toBe(message);
    expect(result.error.details).not.toHaveProperty('component');
    const registering = (await backend.registerPlugin(fixturePlugins.basic).catch((error: unknown) => error)) as ValidationError;
    const reloading = (await backend.reloadPlugin(BASIC).catch((error: unknown) => error)) as ValidationError;
    expect(new Set([first, second, registering, reloading]).size).toBe(4);
    expect([registering.message, reloading.message]).toEqual([message, message]);
    await backend.shutdown();
  });

  it('shutdown() before first use loads nothing and later calls get SHUTTING_DOWN', async () => {
    const backend = createExecutionBackend({ type: 'in-process' });
    await backend.shutdown();
    const refused = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expectError(refused, 'SHUTTING_DOWN');
    expect(refused.error.details).toEqual({ phase: 'queued' });
    await expect(backend.registerPlugin(fixturePlugins.basic)).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
  });

  it('execute() never rejects, before the backend is loaded or after shutdown, whatever getters the request or options have; refusals after shutdown are counted', async () => {
    const throwing = (what: string) =>
      Object.defineProperty({ pluginId: BASIC, handlerId: 'echo' }, 'input', { enumerable: true, get: () => { throw new Error(`${what} getter`); } });
    const badOptions = Object.defineProperty({}, 'timeoutMs', { enumerable: true, get: () => { throw new Error('options getter'); } });
    const first = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    expectError(await first.execute(throwing('request')), 'INTERNAL_ERROR');
    const second = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    expectError(await second.execute({ pluginId: BASIC, handlerId: 'echo' }, badOptions as never), 'INTERNAL_ERROR');
    expectOk(await second.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    await second.shutdown();
    // Refused by the loaded backend, as one made with its constructor refuses them, and counted.
    expect((await second.execute(throwing('request'))).ok).toBe(false);
    expect((await second.execute({ pluginId: BASIC, handlerId: 'echo' }, badOptions as never)).ok).toBe(false);
    expectError(await second.execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
    const { byOutcome, total } = await second.stats();
    expect(total).toBe(5);
    expect(byOutcome.ok).toBe(1);
    expect(byOutcome.SHUTTING_DOWN).toBeGreaterThanOrEqual(2);
    await first.shutdown();
    const neverLoaded = createExecutionBackend({ type: 'in-process' });
    await neverLoaded.shutdown();
    expectError(await neverLoaded.execute(throwing('request')), 'SHUTTING_DOWN');
  });

  it('before its backend has loaded, execute() reads the request and options as the loaded backend does: inherited fields and class getters count (a time limit is not lost)', async () => {
    class Request {
      get pluginId() {
        return BASIC;
      }
      get handlerId() {
        return 'echo';
      }
      get input() {
        return 42;
      }
    }
    const first = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    const echoed = await first.execute(new Request() as never);
    expectOk(echoed);
    expect(echoed.data).toBe(42);
    const second = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    const limited = await second.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, Object.create({ timeoutMs: 150 }));
    expectError(limited, 'TIMEOUT');
    expect(limited.meta.timeoutMs).toBe(150);
    // A JSON-made "__proto__" key is a field refused by name, before load as after, not a prototype.
    const third = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    const protoRequest = await third.execute(JSON.parse(`{"__proto__": {"pluginId": "${BASIC}"}, "handlerId": "echo"}`));
    expectError(protoRequest, 'VALIDATION_ERROR');
    const fourth = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    const protoOptions = await fourth.execute({ pluginId: BASIC, handlerId: 'echo' }, JSON.parse('{"__proto__": {"timeoutMs": 200}}'));
    expectError(protoOptions, 'VALIDATION_ERROR');
    expect(protoOptions.error.message).toContain('__proto__');
    await Promise.all([first.shutdown(), second.shutdown(), third.shutdown(), fourth.shutdown()]);
  });

  it('an execute() in the same tick as a registerPlugin() not awaited says to await it, on a lazy backend and on one made with its constructor', async () => {
    const hint = 'a plugin is still being registered (a registerPlugin() not awaited yet): await it before execute()';
    const loaded = createExecutionBackend({ type: 'in-process', workspace: false });
    await loaded.ready();
    for (const backend of [createExecutionBackend({ type: 'in-process', workspace: false }), loaded, new InProcessBackend({ workspace: false })]) {
      const registering = backend.registerPlugin(fixturePlugins.basic);
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
      expectError(result, 'HANDLER_NOT_FOUND');
      expect(result.error.message).toContain(hint);
      await registering;
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
      await backend.shutdown();
    }
  });

  it('health(), stats() and ready() after shutdown() load nothing either: a backend never used reports itself closed', async () => {
    const loaded: string[] = [];
    const backend = lazyExecutionBackend({ type: 'worker-pool', maxConcurrency: 3 }, async (type) => {
      loaded.push(type);
      return InProcessBackend as never;
    });
    await backend.shutdown();
    expect(await backend.health()).toMatchObject({ ok: false, backend: 'worker-pool', state: 'closed', problems: ['backend is closed'], active: 0, queued: 0 });
    expect(await backend.stats()).toMatchObject({ backend: 'worker-pool', state: 'closed', active: 0, queued: 0, concurrency: 3, total: 0, latency: { run: { count: 0 } } });
    await expect(backend.ready()).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    expect(loaded).toEqual([]);
    // Used, then shut down: not ready either (before, ready() resolved for a closed backend).
    const used = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    await used.ready();
    await used.shutdown();
    await expect(used.ready()).rejects.toMatchObject({ code: 'SHUTTING_DOWN', message: 'The in-process backend is shut down' });
  });

  it('stats() and health() called by an onShutdown() listener of a backend never used load nothing: it says shutting-down, then closed', async () => {
    const loaded: string[] = [];
    const backend = lazyExecutionBackend({ type: 'queue', maxConcurrency: 3 }, async (type) => {
      loaded.push(type);
      return InProcessBackend as never;
    });
    const seen: unknown[] = [];
    // A host's close-everything that reports its components' figures as it goes.
    backend.onShutdown(async () => {
      seen.push(await backend.stats(), await backend.health());
    });
    await backend.shutdown();
    // Before: the package loaded and the backend made (a queue backend connecting to its server) only to be shut down, loaded ['queue'].
    expect(loaded).toEqual([]);
    expect(seen).toMatchObject([
      { backend: 'queue', state: 'shutting-down', active: 0, queued: 0, concurrency: 3, total: 0 },
      { ok: false, backend: 'queue', state: 'shutting-down', problems: ['backend is shutting-down'], active: 0, queued: 0 },
    ]);
    expect(await backend.stats()).toMatchObject({ state: 'closed', total: 0 });
    expect(loaded).toEqual([]);
  });

  it('stats() and health() say shutting-down from the moment shutdown() is called, not ready', async () => {
    for (const type of ['in-process', 'worker-pool'] as const) {
      const backend = createExecutionBackend({ type, plugins: [fixturePlugins.basic], workspace: false });
      await backend.health();
      const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 300 } });
      const stopped = backend.shutdown({ timeoutMs: 5000 });
      expect([(await backend.stats()).state, (await backend.health()).state], type).toEqual(['shutting-down', 'shutting-down']);
      expectOk(await running);
      await stopped;
      expect((await backend.stats()).state, type).toBe('closed');
    }
  });

  it('stats() and health() say shutting-down while its onShutdown() listeners run, before the loaded backend hears of it', async () => {
    const backend = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    await backend.ready();
    let release!: () => void;
    const listening = new Promise<void>((resolve) => (release = resolve));
    backend.onShutdown(() => listening);
    const stopped = backend.shutdown({ timeoutMs: 5000 });
    const health = await backend.health();
    expect([(await backend.stats()).state, health.state]).toEqual(['shutting-down', 'shutting-down']);
    expect(health).toMatchObject({ ok: false, problems: ['backend is shutting-down'] });
    release();
    await stopped;
    expect((await backend.stats()).state).toBe('closed');
  });

  it('an execute() refused in the first moments of shutdown() (before its loaded backend heard of it), or while its package still loads, is counted in stats() as every later refusal is', async () => {
    const request = { pluginId: BASIC, handlerId: 'echo', input: 1 };
    const used = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    expectOk(await used.execute(request));
    const stopping = used.shutdown();
    const [sameTick, nextTick] = [used.execute(request), Promise.resolve().then(() => used.execute(request))];
    expectError(await sameTick, 'SHUTTING_DOWN');
    expectError(await nextTick, 'SHUTTING_DOWN');
    await stopping;
    expectError(await used.execute(request), 'SHUTTING_DOWN');
    // Before, the two refused before the loaded backend heard of the shutdown were not counted: 2 and 1.
    expect(await used.stats()).toMatchObject({ total: 4, byOutcome: { ok: 1, SHUTTING_DOWN: 3 } });
    // Its package still loading when shutdown() is called: refused once it has loaded, and counted.
    const loading = createExecutionBackend({ type: 'worker-pool', plugins: [fixturePlugins.basic], workspace: false });
    const ready = loading.ready();
    const stopped = loading.shutdown();
    const refused = await loading.execute(request);
    expectError(refused, 'SHUTTING_DOWN');
    expect(refused.error.details).toMatchObject({ phase: 'queued' });
    await Promise.all([ready, stopped]);
    expect(await loading.stats()).toMatchObject({ state: 'closed', total: 1, byOutcome: { SHUTTING_DOWN: 1 } });
  });

  it('a backend shut down before it loaded counts the executions it answered in stats(); those answered before a load (refused options too) are timed to the microsecond as every result is', async () => {
    const request = { pluginId: BASIC, handlerId: 'echo', input: 1 };
    const closed = createExecutionBackend({ type: 'worker-pool', plugins: [fixturePlugins.basic], workspace: false });
    await closed.shutdown();
    const refused = [await closed.execute(request), await closed.execute(request)];
    const broken = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false, maxConcurrency: -1 });
    refused.push(await broken.execute(request));
    for (const result of refused) expect(result.meta.durationMs).toBe(Math.round(result.meta.durationMs * 1000) / 1000);
    // Never handed to a runner: all of their time, the package's failed load included, was queue wait (before: 0, however long the load took).
    for (const result of refused) expect(result.meta).toMatchObject({ queueWaitMs: result.meta.durationMs, runMs: 0 });
    expect(await closed.stats()).toMatchObject({ state: 'closed', total: 2, byOutcome: { ok: 0, SHUTTING_DOWN: 2 } });
    expectError(refused[2]!, 'VALIDATION_ERROR');
    await broken.shutdown();
  });

  it('onShutdown(): listeners run first, while the backend still serves; one that throws does not stop the shutdown', async () => {
    const backend = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    const seen: string[] = [];
    backend.onShutdown(async () => {
      const last = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'last' });
      seen.push(last.ok ? `ok:${String(last.data)}` : last.error.code);
    });
    backend.onShutdown(() => {
      throw new Error('a broken listener');
    });
    const removed = backend.onShutdown(() => void seen.push('removed listener ran'));
    removed();
    await backend.shutdown();
    expect(seen).toEqual(['ok:last']);
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
    // Added once shutdown began: it runs at once (before onShutdown() returns) instead of never;
    // one that throws there is as harmless as during the shutdown.
    let ranAtOnce = false;
    backend.onShutdown(() => void (ranAtOnce = true));
    expect(ranAtOnce).toBe(true);
    expect(() => backend.onShutdown(() => {
      throw new Error('late and broken');
    })).not.toThrow();
  });

  it('refuses an unknown backend option on every execution, naming the nearest known one', async () => {
    await using backend = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], defaultTimeoutMS: 5 } as never);
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.details.issues).toEqual([{ path: 'defaultTimeoutMS', message: 'unknown option; did you mean "defaultTimeoutMs"?' }]);
  });

  it('takes its options as they are when it is created, as a constructor does: a grant widened afterwards in the caller\'s object does not reach it', async () => {
    const grant = { platform: { kv: ['get'] } };
    const options = { plugins: [fixturePlugins.basic], platform: testPlatform(), permissions: grant, workspace: false as const };
    const made = [createExecutionBackend({ type: 'in-process', ...options }), new InProcessBackend(options)];
    grant.platform.kv.push('set', 'echo', 'fail', 'unsendable');
    try {
      const outcomes = [];
      for (const backend of made) {
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'set', args: ['k', 'v'] } });
        outcomes.push(result.ok ? { ok: true, data: result.data } : { ok: false, code: result.error.code });
      }
      expect(outcomes[0]).toEqual({ ok: false, code: 'PERMISSION_DENIED' });
      expect(outcomes[1]).toEqual(outcomes[0]);
    } finally {
      await Promise.all(made.map((backend) => backend.shutdown()));
    }
  });

  it('calls the host\'s platform services as given, as a constructor does: one whose methods come after, a Proxy that answers every call (before, copied as plain data: no method)', async () => {
    const later: Record<string, unknown> = {};
    const proxy = new Proxy({}, { get: (_, key) => (key === 'then' ? undefined : async () => `proxy ${String(key)}`) });
    const outcomes: unknown[] = [];
    for (const kv of [later, proxy]) {
      const options = { plugins: [fixturePlugins.basic], platform: { kv }, permissions: { platform: { kv: true as const } }, workspace: false as const };
      const made = [createExecutionBackend({ type: 'in-process', ...options }), new InProcessBackend(options)];
      later.get = async (key: string) => `later ${key}`;
      try {
        for (const backend of made) {
          const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'get', args: ['k'] } });
          outcomes.push(result.ok ? result.data : result.error.code);
        }
      } finally {
        await Promise.all(made.map((backend) => backend.shutdown()));
      }
    }
    expect(outcomes).toEqual(['later k', 'later k', 'proxy get', 'proxy get'].map((value) => ({ ok: true, value })));
  });

  it('reads its options as a constructor does: a class\'s getter, an inherited or a non-enumerable option counts (before, dropped: no plugin was registered)', async () => {
    class Config {
      type = 'worker-pool' as const;
      workspace = false as const;
      get plugins() {
        return [fixturePlugins.basic];
      }
    }
    const inherited = Object.assign(Object.create({ plugins: [fixturePlugins.basic] }) as object, { type: 'in-process', workspace: false });
    const hidden = Object.defineProperty({ type: 'in-process', workspace: false }, 'plugins', { value: [fixturePlugins.basic], enumerable: false });
    const made = [createExecutionBackend(new Config()), createExecutionBackend(inherited as never), createExecutionBackend(hidden as never)];
    try {
      for (const backend of made) expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: backend.type }));
    } finally {
      await Promise.all(made.map((backend) => backend.shutdown()));
    }
  });

  it('reads relative plugin folders and workspace roots from the directory it was created in, not the one of first use', async () => {
    const before = process.cwd();
    const workspaces = await mkdtemp(path.join(os.tmpdir(), 'kb-relative-'));
    const folders = path.dirname(fixturePlugins.basic);
    const relative = { plugins: [`./${path.basename(fixturePlugins.basic)}`], workspace: { root: path.relative(folders, workspaces) } };
    process.chdir(folders);
    const made = [createExecutionBackend({ type: 'worker-pool', ...relative }), new InProcessBackend(relative)];
    try {
      process.chdir(os.tmpdir());
      for (const backend of made) {
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'here' }, { keepWorkspace: true });
        expectOk(result);
        expect(path.dirname(result.meta.workspaceDir!)).toBe(workspaces);
      }
    } finally {
      process.chdir(before);
      await Promise.all(made.map((backend) => backend.shutdown()));
      await rm(workspaces, { recursive: true, force: true });
    }
  });

  it('an ES module cut short in its save (`export de`) is said not to parse, on the thread and process backends, not to be a CommonJS file with export in it', async () => {
    const plugin = await mkdtemp(path.join(os.tmpdir(), 'kb-cut-module-'));
    try {
      await writeFile(path.join(plugin, 'package.json'), JSON.stringify({ type: 'module' }));
      await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@x/cut', version: '1.0.0', handlers: { mjs: { entry: './cut.mjs' }, js: { entry: './cut.js' } } }));
      for (const file of ['cut.mjs', 'cut.js']) await writeFile(path.join(plugin, file), 'export const V = 3;\nexport de');
      for (const type of ['worker-pool', 'subprocess'] as const) {
        await using backend = createExecutionBackend({ type, plugins: [plugin], workspace: false });
        for (const handlerId of ['mjs', 'js']) {
          const result = await backend.execute({ pluginId: '@x/cut', handlerId });
          expectError(result, 'HANDLER_ERROR');
          // Before: "… uses ES module syntax (import/export) but Node loads it as CommonJS. Rename it to .mjs" of a .mjs.
          expect(result.error.message, `${type} ${handlerId}`).toMatch(new RegExp(`cut\\.${handlerId}(:\\d+| \\(or a module it imports\\)) does not parse: SyntaxError: `));
        }
      }
    } finally {
      await rm(plugin, { recursive: true, force: true });
    }
  });

  it('an ES module .js plugin file under a "type": "commonjs" project fails the same way on the thread and process backends, sandboxed or not, saying what to do', async () => {
    // What `npm init -y` writes on npm 11, above a plugin folder with no package.json of its own.
    const project = await mkdtemp(path.join(os.tmpdir(), 'kb-cjs-project-'));
    try {
      const plugin = path.join(project, 'plugins', 'p');
      await mkdir(path.join(plugin, 'dist'), { recursive: true });
      await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'host', type: 'commonjs' }));
      await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@x/esm-in-cjs', version: '1.0.0', handlers: { run: { entry: './dist/run.js' } } }));
      await writeFile(path.join(plugin, 'dist', 'run.js'), 'export default async () => "ran as ESM";\n');
      const file = await realpath(path.join(plugin, 'dist', 'run.js'));
      // (In-process is left out here: under vitest its import() goes through vitest's own module
      // runner, not Node's loader; a plain Node host gets the same message from it.)
      for (const [type, extra] of [['worker-pool', {}], ['subprocess', {}], ['subprocess', { sandbox: 'off' }]] as const) {
        await using backend = createExecutionBackend({ type, plugins: [plugin], workspace: false, ...extra });
        const result = await backend.execute({ pluginId: '@x/esm-in-cjs', handlerId: 'run' });
        expectError(result, 'HANDLER_ERROR');
        expect(result.error.message, `${type} ${JSON.stringify(extra)}`).toBe(
          `Handler "run" of plugin "@x/esm-in-cjs": ${file} uses ES module syntax (import/export) but Node loads it as CommonJS. ` +
            'Rename it to .mjs, or put a package.json with "type": "module" in the plugin folder (it has none: Node goes by the nearest one above it, if any)',
        );
      }
      // One in the plugin folder that says otherwise is named (a sandbox shows nothing above the folder: that is as far as it looks).
      await writeFile(path.join(plugin, 'package.json'), JSON.stringify({ name: 'p', type: 'commonjs' }));
      for (const [type, extra] of [['worker-pool', {}], ['subprocess', {}]] as const) {
        await using backend = createExecutionBackend({ type, plugins: [plugin], workspace: false, ...extra });
        const result = await backend.execute({ pluginId: '@x/esm-in-cjs', handlerId: 'run' });
        expectError(result, 'HANDLER_ERROR');
        expect(result.error.message).toContain(`${file} uses ES module syntax (import/export) but Node loads it as CommonJS. Rename it to .mjs, or make "type" "module" in ${await realpath(path.join(plugin, 'package.json'))}, the package.json nearest to it (it says "type": "commonjs")`);
      }
      // A .cjs file is CommonJS whatever the package.json says: "type" would not help.
      await writeFile(path.join(plugin, 'package.json'), JSON.stringify({ name: 'p', type: 'module' }));
      await writeFile(path.join(plugin, 'dist', 'run.cjs'), 'export default async () => "ran as ESM";\n');
      await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@x/esm-in-cjs', version: '1.0.0', handlers: { run: { entry: './dist/run.cjs' } } }));
      await using cjsBackend = createExecutionBackend({ type: 'worker-pool', plugins: [plugin], workspace: false });
      const cjs = await cjsBackend.execute({ pluginId: '@x/esm-in-cjs', handlerId: 'run' });
      expectError(cjs, 'HANDLER_ERROR');
      expect(cjs.error.message).toContain('run.cjs uses ES module syntax (import/export) but Node loads it as CommonJS. A .cjs file is CommonJS whatever a package.json says: rename it to .mjs');
    } finally {
      await rm(project, { recursive: true, force: true });
    }
  });

  it('health() names a workspace root where no workspace can be made, as every execution would fail', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-root-file-'));
    try {
      const root = path.join(dir, 'a-file');
      await writeFile(root, 'not a directory');
      await using backend = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: { root } });
      expectError(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }), 'WORKSPACE_ERROR');
      const health = await backend.health();
      expect(health.ok).toBe(false);
      expect(health.problems).toContain(`Cannot create workspace root ${root}: it is not a directory`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('health() names a plugin whose code is not there: none of its entries built, or its folder deleted under the running host', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'kb-missing-code-'));
    try {
      const unbuilt = path.join(root, 'unbuilt');
      const deleted = path.join(root, 'deleted');
      for (const dir of [unbuilt, deleted]) await mkdir(dir, { recursive: true });
      await writeFile(path.join(unbuilt, 'kb.plugin.json'), JSON.stringify({ id: '@x/unbuilt', version: '1.0.0', handlers: { run: { entry: './dist/run.js' } } }));
      await writeFile(path.join(deleted, 'kb.plugin.json'), JSON.stringify({ id: '@x/deleted', version: '1.0.0', handlers: { run: { entry: './run.mjs' } } }));
      await writeFile(path.join(deleted, 'run.mjs'), 'export default () => "here";\n');
      for (const type of ['in-process', 'worker-pool', 'subprocess'] as const) {
        await using backend = createExecutionBackend({ type, plugins: [unbuilt, deleted], workspace: false });
        const before = await backend.health();
        expect(before.ok, type).toBe(false);
        expect(before.problems).toEqual([expect.stringMatching(/^plugin "@x\/unbuilt": none of its handlers' entries exists in \S+ \(\.\/dist\/run\.js\): is it built\?$/)]);
      }
      await using backend = createExecutionBackend({ type: 'worker-pool', plugins: [deleted], workspace: false });
      expect((await backend.health()).ok).toBe(true);
      await rm(deleted, { recursive: true });
      expect((await backend.health()).problems).toEqual([`plugin "@x/deleted": its folder ${deleted} does not exist`]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('a relative plugin folder that is not there is said to resolve from the working directory, though createExecutionBackend() made it absolute when called', async () => {
    await using backend = createExecutionBackend({ type: 'in-process', plugins: ['./no-such-plugins/report'], workspace: false });
    expect((await backend.health()).problems).toEqual([
      `plugins[0] failed to load: Plugin folder ${path.resolve('no-such-plugins/report')} does not exist (a relative path is resolved from the working directory, ${process.cwd()}, ` +
        `not from the host's module: new URL("./no-such-plugins/report/", import.meta.url), or path.join(__dirname, "./no-such-plugins/report") in CommonJS, names one beside it)`,
    ]);
  });

  it('health() over more plugins than it looks at together names every one whose code is not there, in the order they were registered', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'kb-many-missing-'));
    try {
      const folders: string[] = [];
      for (let i = 0; i < 150; i++) {
        const dir = path.join(root, `p${i}`);
        await mkdir(dir);
        await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: `@many/p${i}`, version: '1.0.0', handlers: { run: { entry: './run.mjs' } } }));
        await writeFile(path.join(dir, 'run.mjs'), 'export default () => 1;\n');
        folders.push(dir);
      }
      await using backend = createExecutionBackend({ type: 'in-process', plugins: folders, workspace: false });
      expect((await backend.health()).problems).toEqual([]);
      await rm(path.join(folders[140]!, 'run.mjs'));
      await rm(folders[70]!, { recursive: true });
      await rm(path.join(folders[2]!, 'run.mjs'));
      expect((await backend.health()).problems).toEqual([
        expect.stringMatching(/^plugin "@many\/p2": none of its handlers' entries exists/),
        `plugin "@many/p70": its folder ${folders[70]} does not exist`,
        expect.stringMatching(/^plugin "@many\/p140": none of its handlers' entries exists/),
      ]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("times its first executions from the call, the backend package's load included: meta.startedAt is when execute() was called", async () => {
    const backend = createExecutionBackend({ type: 'worker-pool', plugins: [fixturePlugins.basic], workspace: false });
    try {
      const before = performance.now();
      const pending = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
      const calledBy = Date.now();
      const result = await pending;
      const ownMs = performance.now() - before;
      expectOk(result);
      // Before: taken once the package had loaded (~100-300 ms later), and durationMs without that load.
      expect(result.meta.startedAt).toBeLessThanOrEqual(calledBy);
      expect(result.meta.durationMs).toBeGreaterThanOrEqual(ownMs - 5);
    } finally {
      await backend.shutdown();
    }
  });

  it('registers plugins after creation', async () => {
    await using backend = createExecutionBackend({ workspace: false });
    await backend.registerPlugin(fixturePlugins.cjs);
    expectOk(await backend.execute({ pluginId: '@conformance/cjs', handlerId: 'default', input: 2 }));
    await expect(backend.registerPlugin({ root: '/nowhere', manifest: { id: 'x' } })).rejects.toMatchObject({ code: 'VALIDATION_ERROR' });
  });
});

// The lazy wrapper must be indistinguishable from the backend it wraps.
// In-process inside vitest: its handler modules are loaded by vitest's module runner (see
// packages/in-process/test/module-loading.test.ts for the same check in a plain Node process).
describe('telemetry of a backend that never loaded', () => {
  it('an execution refused because the backend could not load (a bad option), or was shut down before its first use, is recorded as the backend records its own: a span and the executions metric', async () => {
    const sdk = installTestSdk();
    try {
      const misspelt = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], maxThreadz: 1 } as never);
      expectError(await misspelt.execute({ pluginId: BASIC, handlerId: 'echo' }), 'VALIDATION_ERROR');
      const unused = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic] });
      await unused.shutdown();
      expectError(await unused.execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
      const spans = sdk.spans().map((span) => [span.name, span.attributes['kb.plugin_execution.outcome']]);
      expect(spans).toEqual([
        [`execute ${BASIC}/echo`, 'VALIDATION_ERROR'],
        [`execute ${BASIC}/echo`, 'SHUTTING_DOWN'],
      ]);
      const executions = await sdk.points('kb.plugin_execution.executions');
      expect(total(executions, { 'kb.plugin_execution.outcome': 'VALIDATION_ERROR', 'kb.plugin_execution.backend': 'in-process' })).toBe(1);
      expect(total(executions, { 'kb.plugin_execution.outcome': 'SHUTTING_DOWN' })).toBe(1);
    } finally {
      await sdk.uninstall();
    }
  });

  it('such a refusal given ExecuteOptions.traceparent is a span under that remote parent, as a loaded backend records its own', async () => {
    const sdk = installTestSdk();
    try {
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const misspelt = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], maxThreadz: 1 } as never);
      expectError(await misspelt.execute({ pluginId: BASIC, handlerId: 'echo' }, { traceparent }), 'VALIDATION_ERROR');
      const unused = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic] });
      await unused.shutdown();
      expectError(await unused.execute({ pluginId: BASIC, handlerId: 'echo' }, { traceparent }), 'SHUTTING_DOWN');
      // Before: each the root of a trace of its own.
      const spans = sdk.spans().map((span) => [span.attributes['kb.plugin_execution.outcome'], span.spanContext().traceId, span.parentSpanContext?.spanId]);
      expect(spans).toEqual([
        ['VALIDATION_ERROR', '4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7'],
        ['SHUTTING_DOWN', '4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7'],
      ]);
    } finally {
      await sdk.uninstall();
    }
  });
});

describeConformance('in-process', (options) => createExecutionBackend({ ...options, type: 'in-process' }), {
  preemptsSyncCode: false,
  isolatesCrashes: false,
  isolatesGlobals: false,
  loadsModulesWithNode: false,
  capturesOutput: false,
  sharesMemory: true,
});
