import { isExecutionError, type IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { TIMEOUT_OPTION_REFUSALS, expectError, expectOk, waitFor } from '../expect-result.js';
import { BASIC, fixturePlugins } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';
import { reloading } from './reloading.js';

export function describeLifecycle(suite: SuiteContext): void {
  describe('lifecycle', () => {
    lifecycleTests(suite);
  });
}

/** Stats, health, shutdown and await using. */
function lifecycleTests(suite: SuiteContext): void {
  const { make, name } = suite;
  it('counts outcomes and latencies in stats()', async () => {
    const backend = make();
    await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    await backend.execute({ pluginId: BASIC, handlerId: 'throws' });
    await backend.execute({ pluginId: BASIC, handlerId: 'nope' });
    const stats = await backend.stats();
    expect(stats.backend).toBe(name);
    expect(stats.total).toBe(3);
    expect(stats.byOutcome).toMatchObject({ ok: 1, HANDLER_ERROR: 1, HANDLER_NOT_FOUND: 1 });
    // The handler that does not exist never reached a runner: an outcome, not a latency.
    expect(stats.latency.total.count).toBe(2);
    expect(stats.latency.run.count).toBe(2);
    expect(stats.latency.total.p99).toBeGreaterThanOrEqual(stats.latency.total.p50);
    expect(stats.active).toBe(0);
    const health = await backend.health();
    expect(health).toMatchObject({ ok: true, backend: name, state: 'ready' });
  });

  it('health() says how many executions run and how many wait, as stats() does', async () => {
    const backend = make({ maxConcurrency: 1 });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    const controller = new AbortController();
    const pending = [1, 2].map(() => backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { signal: controller.signal, timeoutMs: 60_000 }));
    await waitFor(async () => (await backend.stats()).queued === 1);
    expect(await backend.health()).toMatchObject({ active: 1, queued: 1 });
    controller.abort();
    for (const result of await Promise.all(pending)) expectError(result, 'ABORTED');
    expect(await backend.health()).toMatchObject({ active: 0, queued: 0 });
  });

  it('its methods work taken off it: const { execute } = backend, .then(backend.execute)', async () => {
    const backend = make();
    const { execute, stats, health } = backend;
    const passed = await Promise.resolve({ pluginId: BASIC, handlerId: 'echo', input: 1 }).then(backend.execute);
    expectOk(passed);
    expect(passed.data).toBe(1);
    const taken = await execute({ pluginId: BASIC, handlerId: 'echo', input: 2 });
    expectOk(taken);
    expect((await stats()).total).toBe(2);
    expect((await health()).ok).toBe(true);
    // Not among its fields: a spread or a log of the backend shows no method.
    expect(Object.keys(backend)).not.toContain('execute');
  });

  it('counts executions that wait for the plugins to load (first use) as queued', async () => {
    const backend = make({ maxConcurrency: 1 });
    const results = [1, 2, 3].map((input) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input }));
    // In the same turn: nothing can have loaded yet.
    const stats = await backend.stats();
    expect(stats.queued + stats.active).toBe(3);
    for (const result of await Promise.all(results)) expectOk(result);
    expect((await backend.stats()).queued).toBe(0);
  });

  it('a burst while the plugins load: those that could neither run nor wait once they load get QUEUE_FULL at once, not held until then', async () => {
    const backend = make({ maxConcurrency: 1, maxQueue: 2 });
    const results = Array.from({ length: 10 }, (_, input) => backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 50, input } }));
    // In the same turn: nothing can have loaded yet, and only what will fit is held.
    const stats = await backend.stats();
    expect(stats.queued + stats.active).toBe(3);
    const codes = (await Promise.all(results)).map((result) => (result.ok ? 'ok' : result.error.code));
    expect(codes).toEqual(['ok', 'ok', 'ok', ...Array(7).fill('QUEUE_FULL')]);
  });

  it("QUEUE_FULL's details name the bound and what filled it, refused while the plugins load or once they run (docs/errors.md)", async () => {
    const backend = make({ maxConcurrency: 1, maxQueue: 1 });
    const controller = new AbortController();
    const options = { signal: controller.signal, timeoutMs: 60_000 };
    const [running, queued, early] = [1, 2, 3].map(() => backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, options));
    const refusedEarly = await early!;
    expectError(refusedEarly, 'QUEUE_FULL');
    expect(refusedEarly.error.details).toMatchObject({ maxQueue: 1, active: expect.any(Number), concurrency: 1 });
    await waitFor(async () => (await backend.stats()).queued === 1);
    const refused = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expectError(refused, 'QUEUE_FULL');
    expect(refused.error.details).toEqual({ maxQueue: 1, active: 1, concurrency: 1 });
    controller.abort();
    for (const result of await Promise.all([running!, queued!])) expectError(result, 'ABORTED');
  });

  it('after shutdown(), new calls get SHUTTING_DOWN and nothing is left', async () => {
    const backend = make();
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    await backend.shutdown();
    await backend.shutdown();
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
    expect((await backend.health()).ok).toBe(false);
    expect((await backend.stats()).state).toBe('closed');
    // Plugin changes are refused naming what was asked and the backend.
    await expect(reloading(backend).registerPlugin(fixturePlugins.basic)).rejects.toMatchObject({ code: 'SHUTTING_DOWN', message: expect.stringMatching(/^Cannot register a plugin: .*backend/) });
    await expect(reloading(backend).reloadPlugin(BASIC)).rejects.toMatchObject({ code: 'SHUTTING_DOWN', message: expect.stringMatching(new RegExp(`^Cannot reload plugin "${BASIC}": .*backend`)) });
  });

  it('shutdown() stops running executions after its timeout and fails queued ones', async () => {
    const backend = make({ maxConcurrency: 1 });
    const running = backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 60_000 });
    const queued = backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    await waitFor(async () => (await backend.stats()).queued === 1);
    await backend.shutdown({ timeoutMs: 100 });
    expectError(await running, 'SHUTTING_DOWN');
    expectError(await queued, 'SHUTTING_DOWN');
  });

  it('a second shutdown() with a shorter timeoutMs cuts the first one\'s wait short; both settle', async () => {
    const backend = make();
    let started = false;
    const running = backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 600_000, onEvent: () => (started = true) });
    await waitFor(async () => started || (await backend.stats()).active === 1);
    // The first would wait ten minutes for the execution (past the test's own timeout).
    const first = backend.shutdown({ timeoutMs: 600_000 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const second = backend.shutdown({ timeoutMs: 100 });
    await Promise.all([first, second]);
    expectError(await running, 'SHUTTING_DOWN');
    expect((await backend.stats()).state).toBe('closed');
  });

  it('a second shutdown() with a longer timeoutMs does not push the first one\'s deadline back; both settle by it', async () => {
    const backend = make();
    let started = false;
    const running = backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 600_000, onEvent: () => (started = true) });
    await waitFor(async () => started || (await backend.stats()).active === 1);
    const first = backend.shutdown({ timeoutMs: 100 });
    // Were it to take this one's ten minutes, both would outlive the test's own timeout.
    const second = backend.shutdown({ timeoutMs: 600_000 });
    await Promise.all([first, second]);
    expectError(await running, 'SHUTTING_DOWN');
    expect((await backend.stats()).state).toBe('closed');
  });

  it("an onShutdown() listener that awaits its own backend's shutdown() is not waited for by it: both settle long before timeoutMs", async () => {
    const backend = make();
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    let listenerDone = false;
    backend.onShutdown(async () => {
      // After an await of its own, as a host's close-everything calls it.
      await new Promise((resolve) => setTimeout(resolve, 10));
      await backend.shutdown();
      listenerDone = true;
    });
    const started = performance.now();
    await backend.shutdown({ timeoutMs: 15_000 });
    await waitFor(() => listenerDone);
    // Before: the shutdown waited for the listener, and the listener for it, until the timeout (10 s: the listener's own call brought it forward).
    expect(performance.now() - started).toBeLessThan(7_500);
    expect((await backend.stats()).state).toBe('closed');
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
  });

  it('shutdown() lets running executions finish within its timeout', async () => {
    const backend = make();
    let started = false;
    const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 150 } }, { onEvent: () => (started = true) });
    await waitFor(() => started);
    await backend.shutdown({ timeoutMs: 5000 });
    expectOk(await running);
  });

  it('shutdown() called right after execute() waits for that execution, which runs to its end', async () => {
    const backend = make();
    // Not started yet when shutdown() begins: its workspace, its runner, its plugin may all be on their way.
    const called = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 50 } });
    const echoed = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'last words' });
    await backend.shutdown({ timeoutMs: 10_000 });
    expectOk(await called);
    const result = await echoed;
    expectOk(result);
    expect(result.data).toBe('last words');
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
  });

  it('an execute() called right after shutdown(), in the same turn, gets SHUTTING_DOWN', async () => {
    const backend = make();
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    const closing = backend.shutdown();
    const late = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after shutdown()' });
    await closing;
    const result = await late;
    expectError(result, 'SHUTTING_DOWN');
    expect(result.error.details).toMatchObject({ phase: 'queued' });
  });

  it('shutdown() with options it cannot take is a VALIDATION_ERROR naming them, and shuts nothing down', async () => {
    const backend = make();
    for (const [options, says] of TIMEOUT_OPTION_REFUSALS) {
      const refused = await backend.shutdown(options as never).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(isExecutionError(refused) && refused.code).toBe('VALIDATION_ERROR');
      expect((refused as Error).message).toContain(says);
    }
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    // null as "no options", as execute() takes it; a mistake is said on a shut-down backend too.
    await backend.shutdown(null as never);
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
    const late = await backend.shutdown({ timeout: 100 } as never).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect((late as Error)?.message).toContain('timeout: unknown option; did you mean "timeoutMs"?');
  });

  it('runs each request as it was when execute() was called, whatever the caller changes after', async () => {
    const backend = make({ maxConcurrency: 1 });
    const first = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 100 } });
    // A caller that reuses one request and one options object, and changes its input in place.
    const input = { word: 'before', list: [1] };
    const request = { pluginId: BASIC, handlerId: 'echo', input };
    const options = { timeoutMs: 10_000 };
    const queued = backend.execute(request, options);
    const context = { host: { kind: 'cli', argv: ['run'] }, custom: { n: 1 } };
    const withContext = backend.execute({ pluginId: BASIC, handlerId: 'context', context });
    input.word = 'after';
    input.list.push(2);
    context.host.argv.push('--changed');
    context.custom.n = 2;
    request.handlerId = 'throws';
    options.timeoutMs = 5000;
    const next = backend.execute(request, options);
    expectOk(await first);
    const result = await queued;
    expectOk(result);
    expect(result.data).toEqual({ word: 'before', list: [1] });
    expect(result.meta).toMatchObject({ handlerId: 'echo', timeoutMs: 10_000 });
    const seen = await withContext;
    expectOk(seen);
    expect((seen.data as { context: unknown }).context).toEqual({ host: { kind: 'cli', argv: ['run'] }, custom: { n: 1 } });
    const changed = await next;
    expectError(changed, 'HANDLER_ERROR');
    expect(changed.meta).toMatchObject({ handlerId: 'throws', timeoutMs: 5000 });
  });

  it('supports await using', async () => {
    let captured: IExecutionBackend | undefined;
    {
      await using backend = make();
      captured = backend;
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    }
    expectError(await captured.execute({ pluginId: BASIC, handlerId: 'echo' }), 'SHUTTING_DOWN');
  });
}
