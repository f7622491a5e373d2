/**
 * Executions waiting for their plugins to load on first use hold places in the queue: stats() and
 * health() count them as queued, and so does the OpenTelemetry `kb.plugin_execution.queued` metric
 * (docs/observability.md), with the real SDK registered.
 */
import { BASIC, expectOk, fixturePlugins, installTestSdk, total, type TestSdk } from '@kb-labs/plugin-execution-conformance';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterEach, expect, it } from 'vitest';
import { LoadsWhenOpened } from './loads-when-opened.js';

let sdk: TestSdk | undefined;

afterEach(async () => {
  await sdk?.uninstall();
  sdk = undefined;
});

it('counts executions waiting for the plugins to load in the queued metric, as stats() and health() count them', async () => {
  sdk = installTestSdk();
  const registry = new LoadsWhenOpened();
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic], registry, workspace: false, maxQueue: 4 });
  try {
    const waiting = [1, 2].map((input) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input }));
    expect((await backend.stats()).queued).toBe(2);
    // Before: 0, while stats() said 2 (and those two count against maxQueue).
    expect(total(await sdk.points('kb.plugin_execution.queued'))).toBe(2);
    registry.open();
    for (const result of await Promise.all(waiting)) expectOk(result);
    expect((await backend.stats()).queued).toBe(0);
    expect(total(await sdk.points('kb.plugin_execution.queued'))).toBe(0);
    // Not the caller's plugin id: it does not name a registered plugin until they have loaded.
    const points = await sdk.points('kb.plugin_execution.queued');
    expect(points.every((point) => point.attributes['kb.plugin_execution.plugin.id'] === undefined)).toBe(true);
  } finally {
    await backend.shutdown();
  }
});
