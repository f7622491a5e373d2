/**
 * Large platform answers are copied on the host's own thread here, one per turn of its event loop
 * (the conformance suite shows it on every backend); those still waiting once the execution is
 * stopped are never copied.
 */
import { BASIC, expectError, fixturePlugins, turnWatchingPlatform } from '@kb-labs/plugin-execution-conformance';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { expect, it } from 'vitest';

it('does not copy the answers still waiting for their turn once the execution is stopped', async () => {
  const controller = new AbortController();
  // Aborted as the first answer is copied: the other three wait for the next turn, and are never copied.
  const watch = turnWatchingPlatform(() => controller.abort());
  await using backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace: false, platform: watch.platform, permissions: { platform: { kv: ['echo'] } } });
  const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-burst', input: { n: 4, await: true } }, { signal: controller.signal, timeoutMs: 60_000 });
  expectError(result, 'ABORTED');
  await new Promise((resolve) => setTimeout(resolve, 50));
  // Before: 4, every answer copied for a handler already stopped.
  expect(watch.turnedBefore).toHaveLength(1);
});
