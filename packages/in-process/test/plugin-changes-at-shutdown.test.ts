/**
 * registerPlugin() and unregisterPlugin() called while the `plugins` option still loads, and a
 * shutdown begun meanwhile (host/plugin-changes.ts): refused as SHUTTING_DOWN once they load,
 * changing nothing, and an unregister refused so lets the plugin resolve again in a backend
 * sharing the registry.
 */
import { pathToFileURL } from 'node:url';
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { expect, it } from 'vitest';
import { LoadsWhenOpened } from './loads-when-opened.js';

const turn = () => new Promise((resolve) => setImmediate(resolve));

it('a registerPlugin() waiting for the plugins option when shutdown begins is refused once they load, and registers nothing', async () => {
  const registry = new LoadsWhenOpened();
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic], registry, workspace: false });
  const registering = backend.registerPlugin(fixturePlugins.cjs);
  registering.catch(() => undefined);
  await turn();
  await backend.shutdown({ timeoutMs: 0 });
  registry.open();
  await expect(registering).rejects.toMatchObject({ code: 'SHUTTING_DOWN', message: 'Cannot register a plugin: the in-process backend is shut down' });
  expect(registry.list().map((p) => p.id)).toEqual([BASIC]);
});

it('an unregisterPlugin() refused so leaves the plugin to a backend sharing the registry; a call during shutdown says "shutting down"', async () => {
  const registry = new LoadsWhenOpened();
  const closing = new InProcessBackend({ plugins: [fixturePlugins.basic], registry, workspace: false });
  const unregistering = closing.unregisterPlugin(BASIC);
  unregistering.catch(() => undefined);
  await turn();
  const shutdown = closing.shutdown({ timeoutMs: 0 });
  await expect(closing.registerPlugin(fixturePlugins.basic)).rejects.toMatchObject({ code: 'SHUTTING_DOWN', message: 'Cannot register a plugin: the in-process backend is shutting down' });
  await shutdown;
  registry.open();
  await expect(unregistering).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
  await using sharing = new InProcessBackend({ registry, workspace: false });
  expectOk(await sharing.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
});

it('registerPlugin() takes a folder given as a file: URL object', async () => {
  await using backend = new InProcessBackend({ workspace: false });
  expect(await backend.registerPlugin(pathToFileURL(fixturePlugins.basic))).toMatchObject({ id: BASIC });
  expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
});
