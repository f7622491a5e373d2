/**
 * A caller that aborts while its execution waits for the plugins to load (first use, a plugin
 * folder slow to read) gets ABORTED at once, as while it waits for a slot or its workspace: before,
 * its result came only once the plugins had loaded, and stats() counted it as queued until then.
 */
import { BASIC, expectError, expectOk, fixturePlugins, installTestSdk } from '@kb-labs/plugin-execution-conformance';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { expect, it } from 'vitest';
import { LoadsWhenOpened } from './loads-when-opened.js';

it('ends the wait for the plugins to load when the caller aborts: ABORTED (queued), counted, no longer queued', async () => {
  const sdk = installTestSdk();
  const registry = new LoadsWhenOpened();
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic], registry, workspace: false, maxQueue: 1 });
  try {
    const controller = new AbortController();
    const aborted = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { signal: controller.signal });
    expect((await backend.stats()).queued).toBe(1);
    controller.abort();
    // Answered with the plugins still loading (before: only once they had loaded).
    const result = await aborted;
    expectError(result, 'ABORTED');
    expect(result.error.details).toMatchObject({ phase: 'queued' });
    expect(result.meta.runMs).toBe(0);
    // Its place among those waiting is free again: another may wait there (maxQueue 1).
    const stats = await backend.stats();
    expect(stats).toMatchObject({ queued: 0, total: 1, byOutcome: { ABORTED: 1 } });
    const next = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 });
    registry.open();
    expectOk(await next);
    const span = sdk.spans().find((s) => s.attributes['kb.plugin_execution.execution.id'] === result.meta.executionId);
    expect(span?.attributes['kb.plugin_execution.outcome']).toBe('ABORTED');
    expect(span?.events.map((event) => event.name)).toEqual(['kb.plugin_execution.abort']);
  } finally {
    registry.open();
    await backend.shutdown();
    await sdk.uninstall();
  }
});
