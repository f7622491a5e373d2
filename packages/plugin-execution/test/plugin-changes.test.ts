import { BASIC, expectError, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { createExecutionBackend } from '@kb-labs/plugin-execution';
import type { PluginReloadEvent } from '@kb-labs/plugin-execution-core';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

describe('registerPlugin(), reloadPlugin() and unregisterPlugin() on a backend made with createExecutionBackend()', () => {
  // docs: each waits for the `plugins` option to be loaded, which would otherwise undo it.
  it('reloadPlugin() and unregisterPlugin() as its first calls wait for its plugins option to load', async () => {
    await using reloaded = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    expect(await reloaded.reloadPlugin(BASIC)).toMatchObject({ id: BASIC });
    expectOk(await reloaded.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    await using unregistered = createExecutionBackend({ type: 'in-process', plugins: [fixturePlugins.basic], workspace: false });
    expect(await unregistered.unregisterPlugin(BASIC)).toBe(true);
    expectError(await unregistered.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }), 'HANDLER_NOT_FOUND');
  });

  // The hint is for an execute() made while a registerPlugin() is under way; once that settles,
  // either way, it would send the caller to await a registration that is long over.
  it('HANDLER_NOT_FOUND\'s "still being registered" hint ends with the registerPlugin() it was for, whether that succeeded or was refused', async () => {
    const hint = 'a plugin is still being registered';
    const empty = await mkdtemp(path.join(os.tmpdir(), 'kb-no-manifest-'));
    try {
      await using backend = createExecutionBackend({ type: 'in-process', workspace: false });
      await backend.registerPlugin(fixturePlugins.basic);
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
      await expect(backend.registerPlugin(empty)).rejects.toMatchObject({ code: 'VALIDATION_ERROR' });
      const unknown = await backend.execute({ pluginId: '@t/unknown', handlerId: 'run' });
      expectError(unknown, 'HANDLER_NOT_FOUND');
      expect(unknown.error.message).not.toContain(hint);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('with watch on, a plugin added with registerPlugin() is watched once it resolves, its sub-folders too', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-registered-watched-'));
    try {
      await cp(fixturePlugins.basic, dir, { recursive: true });
      await mkdir(path.join(dir, 'lib', 'deep'), { recursive: true });
      const events: PluginReloadEvent[] = [];
      await using backend = createExecutionBackend({ type: 'in-process', workspace: false, watch: { debounceMs: 30, onReload: (event) => events.push(event) } });
      await backend.registerPlugin(dir);
      await writeFile(path.join(dir, 'lib', 'deep', 'x.js'), '1');
      const until = Date.now() + 5000;
      while (events.length === 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(events).toMatchObject([{ ok: true, pluginId: BASIC, changed: [path.join('lib', 'deep', 'x.js')] }]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  // docs/plugins.md: the folders its manifest lets its handlers write are not watched, and the rest of its folder is.
  it('with watch on, a plugin registered again with other fs.write folders is watched by its new manifest', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-registered-writes-'));
    try {
      await mkdir(path.join(dir, 'data'));
      await mkdir(path.join(dir, 'logs'));
      await writeFile(path.join(dir, 'run.mjs'), 'export default () => 1;');
      const writing = (write: string[]) => ({ root: dir, manifest: { id: '@t/writes', version: '1.0.0', permissions: { fs: { write } }, handlers: { run: { entry: 'run.mjs' } } } });
      const events: PluginReloadEvent[] = [];
      await using backend = createExecutionBackend({ type: 'in-process', workspace: false, watch: { debounceMs: 30, onReload: (event) => events.push(event) } });
      await backend.registerPlugin(writing(['data']));
      // Its next generation: `data` holds code now (a helper the handler imports), `logs` is what it writes.
      await backend.registerPlugin(writing(['logs']));
      await writeFile(path.join(dir, 'data', 'helper.mjs'), 'export default 2;');
      await writeFile(path.join(dir, 'logs', 'run.log'), 'ran');
      // Written last: its reload comes after any the two before it make.
      await writeFile(path.join(dir, 'marker.js'), '1');
      const until = Date.now() + 5000;
      while (!events.some((event) => event.changed.includes('marker.js')) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(events.flatMap((event) => event.changed).sort()).toEqual([path.join('data', 'helper.mjs'), 'marker.js']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
