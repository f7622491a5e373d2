import { execFileSync } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { IExecutionBackend, PluginReloadEvent, RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { afterEach, describe, expect, it } from 'vitest';
import { expectError, expectOk, waitFor } from '../expect-result.js';
import { RELOADABLE, fixturePlugins } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';
import { unregisterTests } from './unregister.js';
import { DEBOUNCE_MS, HANDLER, edit, reloading, startedHolding, versionOf } from './reloading.js';

export function describeReload(suite: SuiteContext): void {
  const { reloadsPlugins, runsHostPlugins } = suite.capabilities;
  describe.runIf(reloadsPlugins !== false && runsHostPlugins !== false)('reloading plugins', () => {
    const folders: string[] = [];
    afterEach(async () => {
      await Promise.all(folders.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
    });
    /** A fresh copy of the reloadable fixture plugin, for a test to edit. */
    const copyPlugin = async (): Promise<string> => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-reloadable-'));
      folders.push(dir);
      await cp(fixturePlugins.reloadable, dir, { recursive: true });
      // Readable by all, as plugin folders are (mkdtemp makes it private): a sandboxed child may run as another user.
      await chmod(dir, 0o755);
      return dir;
    };
    reloadTests(suite, copyPlugin);
    watchTests(suite, copyPlugin);
    unregisterTests(suite, copyPlugin);
  });
}

function reloadTests(suite: SuiteContext, copyPlugin: () => Promise<string>): void {
  const { make } = suite;
  it('reloadPlugin(): new executions load the new code, one running at the time finishes on the old', async () => {
    const dir = await copyPlugin();
    const backend = reloading(make({ plugins: [dir] }));
    expect(await versionOf(backend)).toBe('v1');
    const { running } = await startedHolding(backend);
    await edit(dir, HANDLER, "'v1'", "'v2'");
    const plugin = await backend.reloadPlugin(RELOADABLE);
    expect(plugin).toMatchObject({ id: RELOADABLE, root: dir, generation: 1 });
    expect(await versionOf(backend)).toBe('v2');
    const old = await running;
    expectOk(old);
    expect(old.data).toBe('v1');
    await edit(dir, HANDLER, "'v2'", "'v3'");
    await backend.reloadPlugin(RELOADABLE);
    expect(await versionOf(backend)).toBe('v3');
  });

  it('registerPlugin() of a { root, manifest } plugin again with another manifest: new executions get that manifest and load the code anew', async () => {
    const dir = await copyPlugin();
    const manifest = JSON.parse(await readFile(path.join(dir, 'kb.plugin.json'), 'utf8')) as { handlers: Record<string, unknown> };
    const backend = reloading(make({ plugins: [{ root: dir, manifest }] }));
    expect(await versionOf(backend)).toBe('v1');
    await edit(dir, HANDLER, "'v1'", "'v2'");
    const plugin = await backend.registerPlugin({ root: dir, manifest: { ...manifest, handlers: { ...manifest.handlers, renamed: manifest.handlers.version } } });
    expect(plugin).toMatchObject({ id: RELOADABLE, generation: 1 });
    expect(await versionOf(backend, 'renamed')).toBe('v2');
    expect(await versionOf(backend)).toBe('v2');
  });

  it.each(['version', 'version-cjs'])('reloadPlugin() of a plugin folder that is a symbolic link, pointed at a new release: %s runs the new release', async (handlerId) => {
    const releases = await copyPlugin();
    const first = await copyPlugin();
    const second = await copyPlugin();
    await edit(second, path.join('handlers', 'version-value.cjs'), "'v1'", "'v2'");
    await edit(second, HANDLER, "'v1'", "'v2'");
    const current = path.join(releases, 'current');
    await symlink(first, current);
    const backend = reloading(make({ plugins: [current] }));
    expect(await versionOf(backend, handlerId)).toBe('v1');
    // A deploy: the link switched at once to the new release, then the old one removed.
    await symlink(second, `${current}.next`);
    await rename(`${current}.next`, current);
    await backend.reloadPlugin(RELOADABLE);
    expect(await versionOf(backend, handlerId)).toBe('v2');
    await rm(first, { recursive: true, force: true });
    await backend.reloadPlugin(RELOADABLE);
    expect(await versionOf(backend, handlerId)).toBe('v2');
  });

  it.each(['version', 'version-cjs'])('two backends of one process given the same folder each load the code as it is when they load it (%s)', async (handlerId) => {
    const dir = await copyPlugin();
    const first = reloading(make({ plugins: [dir] }));
    expect(await versionOf(first, handlerId)).toBe('v1');
    await edit(dir, HANDLER, "'v1'", "'v2'");
    await edit(dir, path.join('handlers', 'version-value.cjs'), "'v1'", "'v2'");
    // Created after the edit: it has never loaded the plugin, and gets what is on disk now.
    const second = reloading(make({ plugins: [dir] }));
    expect(await versionOf(second, handlerId)).toBe('v2');
    await first.reloadPlugin(RELOADABLE);
    expect(await versionOf(first, handlerId)).toBe('v2');
    await edit(dir, HANDLER, "'v2'", "'v3'");
    await edit(dir, path.join('handlers', 'version-value.cjs'), "'v2'", "'v3'");
    // The second's reload is its own: it does not get the first's earlier load of the folder.
    await second.reloadPlugin(RELOADABLE);
    expect(await versionOf(second, handlerId)).toBe('v3');
  });

  it('an entry made a symbolic link out of the plugin folder after registration is refused when its module loads, as registration refuses one (VALIDATION_ERROR naming where it leads)', async () => {
    const dir = await copyPlugin();
    const elsewhere = await copyPlugin();
    await edit(elsewhere, HANDLER, "'v1'", "'outside'");
    await rm(path.join(dir, HANDLER));
    // Registered while the entry is missing (not built yet), which registration leaves to the execution.
    const backend = reloading(make({ plugins: [dir] }));
    expectError(await backend.execute({ pluginId: RELOADABLE, handlerId: 'version' }), 'HANDLER_NOT_FOUND');
    await symlink(path.join(elsewhere, HANDLER), path.join(dir, HANDLER));
    const result = await backend.execute({ pluginId: RELOADABLE, handlerId: 'version' });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toContain(`./handlers/version.mjs is a link to ${path.join(elsewhere, HANDLER)}, outside the plugin folder`);
  });

  it('an entry made a FIFO after registration is refused when its module loads (VALIDATION_ERROR naming it), never imported: the backend goes on serving', async () => {
    const dir = await copyPlugin();
    await rm(path.join(dir, HANDLER));
    const backend = reloading(make({ plugins: [dir] }));
    expectError(await backend.execute({ pluginId: RELOADABLE, handlerId: 'version' }), 'HANDLER_NOT_FOUND');
    execFileSync('mkfifo', [path.join(dir, HANDLER)]);
    for (let i = 0; i < 4; i++) {
      const result = await backend.execute({ pluginId: RELOADABLE, handlerId: 'version' }, { timeoutMs: 10_000 });
      expectError(result, 'VALIDATION_ERROR');
      expect(result.error.message).toContain('./handlers/version.mjs is a FIFO, not a module file');
    }
    await rm(path.join(dir, HANDLER));
    await cp(path.join(fixturePlugins.reloadable, HANDLER), path.join(dir, HANDLER));
    expect(await versionOf(backend, 'version')).toBe('v1');
  });

  it('an entry that did not parse, fixed on disk, is loaded as it is now without a reload (Node keeps a failed import for its URL)', async () => {
    const dir = await copyPlugin();
    const fixed = await readFile(path.join(dir, HANDLER), 'utf8');
    await writeFile(path.join(dir, HANDLER), 'export default async function version( {');
    const backend = reloading(make({ plugins: [dir] }));
    for (let i = 0; i < 2; i++) {
      const broken = await backend.execute({ pluginId: RELOADABLE, handlerId: 'version' });
      expectError(broken, 'HANDLER_ERROR');
      expect(broken.error.message).toContain('does not parse');
    }
    await writeFile(path.join(dir, HANDLER), fixed);
    expect(await versionOf(backend, 'version')).toBe('v1');
  });

  it('an entry that was empty when first run (a build not written yet), written since, is loaded as it is now without a reload', async () => {
    const dir = await copyPlugin();
    const written = await readFile(path.join(dir, HANDLER), 'utf8');
    await writeFile(path.join(dir, HANDLER), '');
    const backend = reloading(make({ plugins: [dir] }));
    const empty = await backend.execute({ pluginId: RELOADABLE, handlerId: 'version' });
    expect(empty.ok).toBe(false);
    await writeFile(path.join(dir, HANDLER), written);
    expect(await versionOf(backend, 'version')).toBe('v1');
  });

  it('a CommonJS entry that exported no handler when first run (a stub), written since, is loaded as it is now without a reload (Node caches it by its path too)', async () => {
    const dir = await copyPlugin();
    const entry = path.join(dir, 'handlers', 'version.cjs');
    const written = await readFile(entry, 'utf8');
    await writeFile(entry, 'module.exports = {};\n');
    const backend = reloading(make({ plugins: [dir] }));
    expectError(await backend.execute({ pluginId: RELOADABLE, handlerId: 'version-cjs' }), 'HANDLER_NOT_FOUND');
    await writeFile(entry, written);
    expect(await versionOf(backend, 'version-cjs')).toBe('v1');
  });

  it('reloadPlugin(): a CommonJS handler and the modules it requires are loaded anew', async () => {
    const dir = await copyPlugin();
    const backend = reloading(make({ plugins: [dir] }));
    expect(await versionOf(backend, 'version-cjs')).toBe('v1');
    await edit(dir, path.join('handlers', 'version-value.cjs'), "'v1'", "'v2'");
    await backend.reloadPlugin(RELOADABLE);
    expect(await versionOf(backend, 'version-cjs')).toBe('v2');
  });

  it('reloadPlugin(): a bad manifest is refused with VALIDATION_ERROR and the previous version keeps serving', async () => {
    const dir = await copyPlugin();
    const backend = reloading(make({ plugins: [dir] }));
    expect(await versionOf(backend)).toBe('v1');
    const manifestFile = path.join(dir, 'kb.plugin.json');
    const good = await readFile(manifestFile, 'utf8');
    await writeFile(manifestFile, good.replace('"entry"', '"entyr"'));
    const error = await backend.reloadPlugin(RELOADABLE).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'VALIDATION_ERROR' });
    expect((error as Error).message).toContain(manifestFile);
    expect(await versionOf(backend)).toBe('v1');
    expect(await versionOf(backend, 'version-cjs')).toBe('v1');
    await writeFile(manifestFile, good);
    expect((await backend.reloadPlugin(RELOADABLE)).generation).toBe(1);
  });

  it('reloadPlugin(): HANDLER_NOT_FOUND for an unknown plugin, VALIDATION_ERROR naming what was given for an id that is not a non-empty string, SHUTTING_DOWN after shutdown', async () => {
    const backend = reloading(make());
    const unknown = await backend.reloadPlugin('@conformance/nope').catch((e: unknown) => e);
    expect(unknown).toMatchObject({ code: 'HANDLER_NOT_FOUND' });
    expect((unknown as Error).message).toContain('"@conformance/nope"');
    // As unregisterPlugin() refuses them (docs/plugins.md): not told as a plugin that is not registered.
    for (const [id, says] of [['', 'got an empty string'], [42, 'got a number (42)'], [null, 'got null']] as const) {
      const error = await backend.reloadPlugin(id as string).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'VALIDATION_ERROR', details: { path: 'pluginId' } });
      expect((error as Error).message).toMatch(/^reloadPlugin\(\) needs the id of a registered plugin/);
      expect((error as Error).message).toContain(says);
    }
    await backend.shutdown();
    expect(await backend.reloadPlugin(RELOADABLE).catch((e: unknown) => e)).toMatchObject({ code: 'SHUTTING_DOWN' });
  });
}

function watchTests(suite: SuiteContext, copyPlugin: () => Promise<string>): void {
  const { make } = suite;
  const watching = async (dir: string) => {
    const events: PluginReloadEvent[] = [];
    const backend = make({ plugins: [dir], watch: { debounceMs: DEBOUNCE_MS, onReload: (event: PluginReloadEvent) => events.push(event) } });
    // Watching starts when the plugins are loaded, on first use.
    expect(await versionOf(backend)).toBe('v1');
    return { backend, events };
  };

  it('watch: editing a handler reloads its plugin; node_modules and dot-folders are ignored', async () => {
    const dir = await copyPlugin();
    const { backend, events } = await watching(dir);
    await mkdir(path.join(dir, 'node_modules', 'dep'), { recursive: true });
    await writeFile(path.join(dir, 'node_modules', 'dep', 'index.js'), '');
    await mkdir(path.join(dir, '.cache'));
    await writeFile(path.join(dir, '.cache', 'entry'), '');
    await edit(dir, HANDLER, "'v1'", "'v2'");
    await waitFor(() => events.length > 0);
    expect(events[0]).toMatchObject({ ok: true, pluginId: RELOADABLE, plugin: { generation: 1 } });
    expect(events.flatMap((event) => event.changed)).toContain(HANDLER);
    expect(events.flatMap((event) => event.changed).filter((file) => /node_modules|\.cache/.test(file))).toEqual([]);
    expect(await versionOf(backend)).toBe('v2');
  });

  it('watch: a reload that fails is reported by health() and the previous version keeps serving', async () => {
    const dir = await copyPlugin();
    const { backend, events } = await watching(dir);
    const manifestFile = path.join(dir, 'kb.plugin.json');
    const good = await readFile(manifestFile, 'utf8');
    await writeFile(manifestFile, '{ "id": ');
    await waitFor(() => events.length > 0);
    expect(events.at(-1)).toMatchObject({ ok: false, pluginId: RELOADABLE, error: { code: 'VALIDATION_ERROR' } });
    const health = await backend.health();
    expect(health.ok).toBe(false);
    expect(health.problems.join('\n')).toContain(`plugin "${RELOADABLE}" was not reloaded`);
    expect(await versionOf(backend)).toBe('v1');
    await writeFile(manifestFile, good);
    await waitFor(() => events.at(-1)?.ok === true);
    expect((await backend.health()).ok).toBe(true);
  });

  it('watch: nothing is reloaded after shutdown', async () => {
    const dir = await copyPlugin();
    const { backend, events } = await watching(dir);
    await backend.shutdown();
    await edit(dir, HANDLER, "'v1'", "'v2'");
    // A negative: give a reload every chance to happen.
    await new Promise((resolve) => setTimeout(resolve, DEBOUNCE_MS * 6));
    expect(events).toEqual([]);
    expectError(await backend.execute({ pluginId: RELOADABLE, handlerId: 'version' }), 'SHUTTING_DOWN');
  });
}
