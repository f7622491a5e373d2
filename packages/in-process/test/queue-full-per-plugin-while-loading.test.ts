/**
 * While the plugins load (first use), an execution that could neither run nor wait once they have
 * loaded gets QUEUE_FULL at once, counting its plugin's perPluginConcurrency: before, only the
 * backend's maxConcurrency was counted, so those its plugin's cap would turn away waited for the
 * load, counted in stats().queued past what the queue holds, and got QUEUE_FULL only then.
 */
import { BASIC, CJS, expectError, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { expect, it } from 'vitest';
import { LoadsWhenOpened } from './loads-when-opened.js';

it("refuses at once, while the plugins load, the executions its plugin's perPluginConcurrency and maxQueue leave no room for", async () => {
  const registry = new LoadsWhenOpened();
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic], registry, workspace: false, maxConcurrency: 4, perPluginConcurrency: 1, maxQueue: 2 });
  try {
    const answered: ExecutionResult[] = [];
    const calls = Array.from({ length: 7 }, (_, i) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i }).then((result) => (answered.push(result), result)));
    // One of the plugin runs once they load and two wait: the other four can do neither.
    await new Promise((resolve) => setImmediate(resolve));
    // Before: 1 refused (the seventh, past maxConcurrency + maxQueue), 6 queued with maxQueue 2.
    expect(answered.map((result) => (result.ok ? 'ok' : result.error.code))).toEqual(['QUEUE_FULL', 'QUEUE_FULL', 'QUEUE_FULL', 'QUEUE_FULL']);
    expect(await backend.stats()).toMatchObject({ queued: 3, maxQueue: 2 });
    const refused = answered[0]!;
    expectError(refused, 'QUEUE_FULL');
    expect(refused.error.message).toBe(`Queue is full (3 waiting for the plugins to load, 3 of them of plugin "${BASIC}": its perPluginConcurrency, 1, can run and 2 wait)`);
    expect(refused.error.details).toEqual({ maxQueue: 2, active: 0, concurrency: 4, perPluginConcurrency: 1 });
    registry.open();
    const results = await Promise.all(calls);
    for (const result of results.slice(0, 3)) expectOk(result);
    for (const result of results.slice(3)) expectError(result, 'QUEUE_FULL');
    expect(await backend.stats()).toMatchObject({ total: 7, byOutcome: { ok: 3, QUEUE_FULL: 4 } });
  } finally {
    registry.open();
    await backend.shutdown();
  }
});

it("lets another plugin's executions wait for the load while one plugin's fill its cap and the queue", async () => {
  const registry = new LoadsWhenOpened();
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic, fixturePlugins.cjs], registry, workspace: false, maxConcurrency: 4, perPluginConcurrency: 1, maxQueue: 2 });
  try {
    const refused: ExecutionResult[] = [];
    const capped = Array.from({ length: 3 }, (_, i) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i }));
    // Its plugin has room once they load (and a slot is free): it waits, and runs.
    const other = backend.execute({ pluginId: CJS, handlerId: 'default', input: 'x' });
    const beyond = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 3 }).then((result) => (refused.push(result), result));
    await new Promise((resolve) => setImmediate(resolve));
    expect(refused.map((result) => (result.ok ? 'ok' : result.error.code))).toEqual(['QUEUE_FULL']);
    expect((await backend.stats()).queued).toBe(4);
    registry.open();
    for (const result of await Promise.all(capped)) expectOk(result);
    expectOk(await other);
    expectError(await beyond, 'QUEUE_FULL');
  } finally {
    registry.open();
    await backend.shutdown();
  }
});
