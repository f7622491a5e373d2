import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { afterEach, describe, expect, it } from 'vitest';
import { BASIC, okData, runners, useBackends, waitFor } from './helpers.js';

const PLUGIN = '@wp/reload';
const folders: string[] = [];

/** A plugin whose handler returns the version a module it imports says (an ES module graph, not one file). */
async function writePlugin(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-wp-reload-'));
  folders.push(dir);
  await chmod(dir, 0o755);
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: PLUGIN, version: '1.0.0', handlers: { run: { entry: 'run.mjs' } } }));
  await writeFile(
    path.join(dir, 'run.mjs'),
    "import { VERSION } from './value.mjs';\n" +
      'export default async (input, ctx) => {\n' +
      '  if (input?.holdMs) { ctx.emit({ started: true }); await new Promise((r) => setTimeout(r, input.holdMs)); }\n' +
      '  return VERSION;\n};\n',
  );
  await setVersion(dir, 'v1');
  return dir;
}

const setVersion = (dir: string, version: string) => writeFile(path.join(dir, 'value.mjs'), `export const VERSION = '${version}';\n`);

afterEach(async () => {
  await Promise.all(folders.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('worker-pool: reloading a plugin recycles the threads that ran it', () => {
  const backends = useBackends();

  it('retires an idle thread that ran the plugin at once, starts its replacement, and the next execution loads the whole module graph anew there', async () => {
    const dir = await writePlugin();
    const backend = backends.make({ maxThreads: 1, plugins: [fixturePlugins.basic, dir] });
    const first = await backend.execute({ pluginId: PLUGIN, handlerId: 'run' });
    expect(okData(first)).toBe('v1');
    await setVersion(dir, 'v2');
    await backend.reloadPlugin(PLUGIN);
    await waitFor(async () => (await runners(backend)).retired['plugin-reloaded'] === 1);
    // Its replacement was started at once (minThreads), and waits warm.
    await waitFor(async () => (await runners(backend)).idle === 1);
    expect((await runners(backend)).started).toBe(2);
    const second = await backend.execute({ pluginId: PLUGIN, handlerId: 'run' });
    expect(okData(second)).toBe('v2');
    expect(second.meta.workerId).not.toBe(first.meta.workerId);
  });

  it('lets a busy thread finish its execution on the old code, then retires it', async () => {
    const dir = await writePlugin();
    const backend = backends.make({ maxThreads: 1, plugins: [dir] });
    let started = false;
    const running = backend.execute({ pluginId: PLUGIN, handlerId: 'run', input: { holdMs: 200 } }, { onEvent: () => (started = true) });
    await waitFor(() => started);
    await setVersion(dir, 'v2');
    await backend.reloadPlugin(PLUGIN);
    expect((await runners(backend)).retired['plugin-reloaded']).toBe(0);
    const next = backend.execute({ pluginId: PLUGIN, handlerId: 'run' });
    expect(okData(await running)).toBe('v1');
    expect(okData(await next)).toBe('v2');
    expect((await runners(backend)).retired['plugin-reloaded']).toBe(1);
  });

  it('executions called before the reload and still waiting run their old code on the threads that have it, not a fresh thread each', async () => {
    const dir = await writePlugin();
    const backend = backends.make({ maxThreads: 1, workspace: false, plugins: [dir] });
    let started = false;
    const running = backend.execute({ pluginId: PLUGIN, handlerId: 'run', input: { holdMs: 100 } }, { onEvent: () => (started = true) });
    await waitFor(() => started);
    const waiting = Array.from({ length: 20 }, () => backend.execute({ pluginId: PLUGIN, handlerId: 'run' }));
    await setVersion(dir, 'v2');
    await backend.reloadPlugin(PLUGIN);
    expect(okData(await running)).toBe('v1');
    expect((await Promise.all(waiting)).map(okData)).toEqual(Array.from({ length: 20 }, () => 'v1'));
    expect(okData(await backend.execute({ pluginId: PLUGIN, handlerId: 'run' }))).toBe('v2');
    const stats = await runners(backend);
    // The first thread ran all 21 of the old load, then its replacement the new one.
    expect(stats.started).toBe(2);
    expect(stats.retired['plugin-reloaded']).toBe(1);
  });

  it('a thread that never ran the plugin, handed an execution of its old load (called before the reload, waiting), has the old code loaded: it is retired after it', async () => {
    const dir = await writePlugin();
    const backend = backends.make({ maxThreads: 1, workspace: false, plugins: [fixturePlugins.basic, dir] });
    let started = false;
    const busy = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 300 } }, { onEvent: () => (started = true) });
    await waitFor(() => started);
    const waiting = backend.execute({ pluginId: PLUGIN, handlerId: 'run' });
    await setVersion(dir, 'v2');
    await backend.reloadPlugin(PLUGIN);
    okData(await busy);
    // Read from disk now (the files say v2), but under the old load's module key: not the current load.
    okData(await waiting);
    expect(okData(await backend.execute({ pluginId: PLUGIN, handlerId: 'run' }))).toBe('v2');
    const figures = await runners(backend);
    expect(figures.retired['plugin-reloaded']).toBe(1);
    expect(figures.started).toBe(2);
  });

  it('keeps threads that never ran the plugin', async () => {
    const dir = await writePlugin();
    const backend = backends.make({ maxThreads: 1, plugins: [fixturePlugins.basic, dir] });
    okData(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    await setVersion(dir, 'v2');
    await backend.reloadPlugin(PLUGIN);
    expect(okData(await backend.execute({ pluginId: PLUGIN, handlerId: 'run' }))).toBe('v2');
    const figures = await runners(backend);
    expect(figures.retired['plugin-reloaded']).toBe(0);
    expect(figures.started).toBe(1);
  });
});

describe('worker-pool: unregistering a plugin retires the threads that ran it', () => {
  const backends = useBackends();

  it('a busy thread once its execution ends (an idle one at once, as at a reload); threads that never ran it are kept', async () => {
    const dir = await writePlugin();
    const backend = backends.make({ maxThreads: 2, plugins: [fixturePlugins.basic, dir] });
    let started = false;
    const running = backend.execute({ pluginId: PLUGIN, handlerId: 'run', input: { holdMs: 300 } }, { onEvent: () => (started = true) });
    await waitFor(() => started);
    // The other thread runs the other plugin only.
    okData(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    expect(await backend.unregisterPlugin(PLUGIN)).toBe(true);
    expect((await runners(backend)).retired['plugin-unregistered']).toBe(0);
    expect(okData(await running)).toBe('v1');
    await waitFor(async () => (await runners(backend)).retired['plugin-unregistered'] === 1);
    const figures = await runners(backend);
    expect(figures.retired['plugin-reloaded']).toBe(0);
    expect(figures.started).toBe(2);
    // Registered again from its folder (edited): a fresh thread imports the whole graph anew.
    await setVersion(dir, 'v2');
    await backend.registerPlugin(dir);
    expect(okData(await backend.execute({ pluginId: PLUGIN, handlerId: 'run' }))).toBe('v2');
  });
});

describe('worker-pool: a thread that runs an older load of a plugin, after a reload or an unregister, is retired once it ends', () => {
  const backends = useBackends();

  it.each(['unregister', 'reload'] as const)('an execution queued before %s and started after it: the next load never meets the modules it left cached', async (change) => {
    const dir = await writePlugin();
    const backend = backends.make({ maxConcurrency: 1, minThreads: 1, maxThreads: 1, plugins: [dir] });
    okData(await backend.execute({ pluginId: PLUGIN, handlerId: 'run' }));
    let started = false;
    const running = backend.execute({ pluginId: PLUGIN, handlerId: 'run', input: { holdMs: 300 } }, { onEvent: () => (started = true) });
    const queued = backend.execute({ pluginId: PLUGIN, handlerId: 'run' });
    await waitFor(() => started);
    if (change === 'unregister') await backend.unregisterPlugin(PLUGIN);
    else await backend.reloadPlugin(PLUGIN);
    expect(okData(await running)).toBe('v1');
    // It runs on the thread that has the old load, which goes after it.
    expect(okData(await queued)).toBe('v1');
    await setVersion(dir, 'v2');
    if (change === 'unregister') await backend.registerPlugin(dir);
    else await backend.reloadPlugin(PLUGIN);
    expect(okData(await backend.execute({ pluginId: PLUGIN, handlerId: 'run' }))).toBe('v2');
    // Every thread but the one that ran v2 had the old load and was retired: the first, and, on a
    // machine slow enough that the queued one came after the first had given up waiting for it
    // (StaleWait), the thread that started in its place and ran it.
    const figures = await runners(backend);
    expect(figures.retired[change === 'unregister' ? 'plugin-unregistered' : 'plugin-reloaded']).toBe(figures.started - 1);
    expect(figures.threads).toBe(1);
  });
});
