import { mkdir, mkdtemp, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { ValidationError, type PluginReloadEvent, type RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PluginWatcher } from '../src/host/plugin-watcher.js';
import { DEBOUNCE_MS, registeredAt, waitFor } from './watch-helpers.js';

let dir: string;
let watcher: PluginWatcher | undefined;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-core-watch-'));
});
afterEach(async () => {
  watcher?.close();
  await rm(dir, { recursive: true, force: true });
});

const plugin = (): RegisteredPlugin => registeredAt(dir);

describe('PluginWatcher', () => {
  it('watches folders made after it started, and reports what changed relative to the plugin folder', async () => {
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => plugin());
    await watcher.watch(plugin());
    await mkdir(path.join(dir, 'lib'));
    await waitFor(() => events.length === 1);
    await writeFile(path.join(dir, 'lib', 'util.js'), '');
    await waitFor(() => events.length === 2);
    expect(events[1]).toMatchObject({ ok: true, pluginId: '@t/w', changed: [path.join('lib', 'util.js')] });
  });

  it('does not reload for what its handlers write in the folders their manifest lets them write; its code still reloads', async () => {
    const writer = (): RegisteredPlugin => ({
      id: '@t/w',
      root: dir,
      generation: 0,
      moduleKey: 0,
      manifest: { id: '@t/w', version: '1', permissions: { fs: { write: ['data'] } }, handlers: { h: { entry: './h.mjs', export: 'default', permissions: { fs: { write: ['cache', '.'] } } } } } as never,
    });
    await mkdir(path.join(dir, 'data'));
    await mkdir(path.join(dir, 'cache'));
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => writer());
    await watcher.watch(writer());
    await writeFile(path.join(dir, 'data', 'counter.json'), '1');
    await mkdir(path.join(dir, 'data', 'sub'));
    await writeFile(path.join(dir, 'data', 'sub', 'x'), '');
    await writeFile(path.join(dir, 'cache', 'y'), '');
    await new Promise((resolve) => setTimeout(resolve, DEBOUNCE_MS * 4));
    expect(events).toEqual([]);
    // Its whole folder declared writable ('.') does not hide its code.
    await writeFile(path.join(dir, 'h.mjs'), 'export default () => 2;');
    await waitFor(() => events.length === 1);
    expect(events[0]).toMatchObject({ ok: true, changed: ['h.mjs'] });
  });

  it('watches a plugin folder made again after it was deleted (a branch switch, a build that empties it): reloads it, and hears its later changes', async () => {
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => {
      await stat(dir);
      return plugin();
    });
    await writeFile(path.join(dir, 'a.js'), '1');
    await watcher.watch(plugin());
    await rm(dir, { recursive: true, force: true });
    await waitFor(() => events.some((e) => !e.ok));
    await mkdir(dir);
    await writeFile(path.join(dir, 'a.js'), '2');
    await waitFor(() => events.at(-1)?.ok === true);
    expect(watcher.problems()).toEqual([]);
    const seen = events.length;
    await writeFile(path.join(dir, 'b.js'), '3');
    await waitFor(() => events.length > seen && events.at(-1)?.ok === true);
    expect(events.at(-1)).toMatchObject({ ok: true, changed: ['b.js'] });
  });

  it('watches a plugin folder replaced at once (deleted and made again before the reload): later changes are heard', async () => {
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => plugin());
    await writeFile(path.join(dir, 'a.js'), '1');
    await watcher.watch(plugin());
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    await writeFile(path.join(dir, 'a.js'), '2');
    await waitFor(() => events.length >= 1);
    await new Promise((resolve) => setTimeout(resolve, DEBOUNCE_MS * 4));
    const seen = events.length;
    await writeFile(path.join(dir, 'b.js'), '3');
    await waitFor(() => events.length > seen);
    expect(events.at(-1)).toMatchObject({ ok: true, changed: ['b.js'] });
  });

  it('a plugin folder that is a symlink, pointed elsewhere and then replaced by a real folder: changes in what it is now are heard', async () => {
    const root = path.join(dir, 'plugin');
    await mkdir(path.join(dir, 'a'));
    await mkdir(path.join(dir, 'b'));
    await symlink(path.join(dir, 'a'), root);
    const linked = (): RegisteredPlugin => ({ ...plugin(), root });
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => linked());
    await watcher.watch(linked());
    const settle = async (): Promise<number> => {
      await new Promise((resolve) => setTimeout(resolve, DEBOUNCE_MS * 4));
      return events.length;
    };
    // Before: the watchers followed the first link to a/ and stayed there.
    await unlink(root);
    await symlink(path.join(dir, 'b'), root);
    let seen = await settle();
    await writeFile(path.join(dir, 'b', 'in-b.js'), '1');
    await waitFor(() => events.length > seen && events.at(-1)?.ok === true);
    expect(events.at(-1)).toMatchObject({ changed: ['in-b.js'] });
    await unlink(root);
    await mkdir(root);
    seen = await settle();
    await writeFile(path.join(root, 'real.js'), '2');
    await waitFor(() => events.length > seen && events.at(-1)?.ok === true);
    expect(events.at(-1)).toMatchObject({ changed: ['real.js'] });
  });

  it('the folder holding a symlinked plugin folder deleted and made again (a branch without it, then back): a later switch of the link is heard', async () => {
    const plugins = path.join(dir, 'plugins');
    const root = path.join(plugins, 'current');
    await mkdir(path.join(dir, 'v1'));
    await mkdir(path.join(dir, 'v2'));
    await mkdir(plugins);
    await symlink(path.join(dir, 'v1'), root);
    const linked = (): RegisteredPlugin => ({ ...plugin(), root });
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => {
      await stat(root);
      return linked();
    });
    await watcher.watch(linked());
    await rm(plugins, { recursive: true });
    await waitFor(() => events.some((e) => !e.ok));
    await mkdir(plugins);
    await symlink(path.join(dir, 'v1'), root);
    await waitFor(() => events.at(-1)?.ok === true);
    // A deploy's switch (ln -sfn v2 current): the link made anew and renamed over the old one.
    await symlink(path.join(dir, 'v2'), `${root}.next`);
    await rename(`${root}.next`, root);
    await waitFor(() => events.at(-1)?.changed.includes('.') === true && events.length >= 3);
    const seen = events.length;
    await writeFile(path.join(dir, 'v2', 'in-v2.js'), '1');
    await waitFor(() => events.length > seen);
    expect(events.at(-1)).toMatchObject({ ok: true, changed: ['in-v2.js'] });
  });

  it('a folder above the plugin folder swapped for another (mv app app.old && mv app.new app): the plugin is reloaded, and changes in the new tree are heard', async () => {
    const root = path.join(dir, 'app', 'plugins', 'x');
    await mkdir(root, { recursive: true });
    await mkdir(path.join(dir, 'app.new', 'plugins', 'x'), { recursive: true });
    const nested = (): RegisteredPlugin => ({ ...plugin(), root });
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => nested());
    await watcher.watch(nested());
    await rename(path.join(dir, 'app'), path.join(dir, 'app.old'));
    await rename(path.join(dir, 'app.new'), path.join(dir, 'app'));
    await waitFor(() => events.length >= 1);
    expect(events[0]).toMatchObject({ ok: true, changed: ['.'] });
    await new Promise((resolve) => setTimeout(resolve, DEBOUNCE_MS * 4));
    const seen = events.length;
    await writeFile(path.join(root, 'in-new.js'), '1');
    await waitFor(() => events.length > seen);
    expect(events.at(-1)).toMatchObject({ ok: true, changed: ['in-new.js'] });
  });

  it('watches a sub-folder deleted and made again (rm -rf dist, then a build): later changes in it are heard', async () => {
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => plugin());
    await mkdir(path.join(dir, 'dist'));
    await writeFile(path.join(dir, 'dist', 'a.js'), '1');
    await watcher.watch(plugin());
    await rm(path.join(dir, 'dist'), { recursive: true, force: true });
    await mkdir(path.join(dir, 'dist'));
    await writeFile(path.join(dir, 'dist', 'a.js'), '2');
    await waitFor(() => events.length >= 1);
    await new Promise((resolve) => setTimeout(resolve, DEBOUNCE_MS * 4));
    const seen = events.length;
    await writeFile(path.join(dir, 'dist', 'b.js'), '3');
    await waitFor(() => events.length > seen);
    expect(events.at(-1)).toMatchObject({ ok: true, changed: [path.join('dist', 'b.js')] });
  });

  it('a folder made in a sub-folder of the same name (src/src) is watched, not taken for the sub-folder itself deleted', async () => {
    await mkdir(path.join(dir, 'src'));
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => plugin());
    await watcher.watch(plugin());
    await mkdir(path.join(dir, 'src', 'src'));
    await waitFor(() => events.length === 1);
    expect(events[0]).toMatchObject({ ok: true, changed: [path.join('src', 'src')] });
    await writeFile(path.join(dir, 'src', 'src', 'util.js'), '1');
    await waitFor(() => events.length === 2);
    expect(events[1]).toMatchObject({ ok: true, changed: [path.join('src', 'src', 'util.js')] });
  });

  it('reloads once more when files change during a reload, never two reloads of one plugin at once', async () => {
    let running = 0;
    let most = 0;
    let calls = 0;
    let release!: () => void;
    const blocked = new Promise<void>((resolve) => (release = resolve));
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS }, async () => {
      calls++;
      most = Math.max(most, ++running);
      if (calls === 1) await blocked;
      running--;
      return plugin();
    });
    await watcher.watch(plugin());
    await writeFile(path.join(dir, 'a.js'), '1');
    await waitFor(() => calls === 1);
    await writeFile(path.join(dir, 'a.js'), '2');
    await writeFile(path.join(dir, 'b.js'), '2');
    await new Promise((resolve) => setTimeout(resolve, DEBOUNCE_MS * 4));
    expect(calls).toBe(1);
    release();
    await waitFor(() => calls === 2);
    expect(most).toBe(1);
  });

  it('without onReload, a failed reload is a process warning and a problem until a reload succeeds', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    let fail = true;
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS }, async () => {
      if (fail) throw new ValidationError('bad manifest');
      return plugin();
    });
    try {
      await watcher.watch(plugin());
      await writeFile(path.join(dir, 'kb.plugin.json'), '{');
      await waitFor(() => warnings.length === 1);
      expect(warnings[0]).toMatchObject({ code: 'KB_PLUGIN_RELOAD_FAILED' });
      expect(warnings[0]!.message).toContain('Plugin "@t/w" was not reloaded (its previous version stays registered): bad manifest');
      expect(watcher.problems()).toEqual([`plugin "@t/w" was not reloaded after a change in ${dir} (its previous version stays registered): bad manifest`]);
      fail = false;
      await writeFile(path.join(dir, 'kb.plugin.json'), '{}');
      await waitFor(() => watcher!.problems().length === 0);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('without onReload, the same failure again after another save is not warned again; another failure, or one after a success, is', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    let failure: string | undefined = 'kb.plugin.json: Unexpected end of JSON input';
    let reloads = 0;
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS }, async () => {
      reloads++;
      if (failure) throw new ValidationError(failure);
      return plugin();
    });
    const saved = async (content: string): Promise<void> => {
      const before = reloads;
      await writeFile(path.join(dir, 'kb.plugin.json'), content);
      await waitFor(() => reloads > before);
      await new Promise((resolve) => setTimeout(resolve, DEBOUNCE_MS * 2));
    };
    try {
      await watcher.watch(plugin());
      for (const content of ['{', '{"id"', '{"id":']) await saved(content);
      expect(warnings.map((w) => w.message)).toEqual(['Plugin "@t/w" was not reloaded (its previous version stays registered): kb.plugin.json: Unexpected end of JSON input']);
      failure = 'kb.plugin.json: id: must be a string';
      await saved('{"id":1}');
      expect(warnings).toHaveLength(2);
      expect(warnings[1]!.message).toContain('id: must be a string');
      failure = undefined;
      await saved('{}');
      failure = 'kb.plugin.json: id: must be a string';
      await saved('{"id":1}');
      expect(warnings).toHaveLength(3);
      expect(watcher.problems()).toHaveLength(1);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('an onReload that throws, or is async and rejects, is a process warning, not an unhandled rejection', async () => {
    const { warnings, unhandled, stop } = processWarningsAndRejections();
    watcher = new PluginWatcher(
      {
        debounceMs: DEBOUNCE_MS,
        onReload: async () => {
          throw new Error('dashboard down');
        },
      },
      async () => plugin(),
    );
    try {
      await watcher.watch(plugin());
      await writeFile(path.join(dir, 'index.js'), '');
      await waitFor(() => warnings.length === 1);
      expect(warnings[0]).toMatchObject({ code: 'KB_PLUGIN_RELOAD_CALLBACK', message: "The watch option's onReload callback threw: dashboard down" });
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(unhandled).toEqual([]);
    } finally {
      stop();
    }
  });

  it.each([
    ['throws a null-prototype object', () => { throw Object.create(null); }],
    ['rejects with a revoked Proxy', async () => {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      throw proxy;
    }],
    ['throws an Error whose message cannot be read', () => {
      throw Object.defineProperty(new Error('x'), 'message', { get: () => { throw new Error('unreadable'); } });
    }],
    // Before: not `instanceof Promise` here, its rejection was left unhandled, and the host's process ended.
    ["returns another realm's promise (a vm context) that rejects", () => vm.runInContext('(async () => { throw new Error("dashboard down") })()', vm.createContext({})) as Promise<void>],
  ])('an onReload that %s (odd, or no string can be made of it) is still a process warning, not an unhandled rejection', async (_, onReload) => {
    const { warnings, unhandled, stop } = processWarningsAndRejections();
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload }, async () => plugin());
    try {
      await watcher.watch(plugin());
      await writeFile(path.join(dir, 'index.js'), '');
      await waitFor(() => warnings.length + unhandled.length > 0);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(unhandled).toEqual([]);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ code: 'KB_PLUGIN_RELOAD_CALLBACK', message: expect.stringMatching(/^The watch option's onReload callback threw/) });
    } finally {
      stop();
    }
  });

  it('reloads nothing after close()', async () => {
    let calls = 0;
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS }, async () => {
      calls++;
      return plugin();
    });
    await watcher.watch(plugin());
    await writeFile(path.join(dir, 'a.js'), '1');
    watcher.close();
    await new Promise((resolve) => setTimeout(resolve, DEBOUNCE_MS * 4));
    expect(calls).toBe(0);
  });
});

/** The process warnings and unhandled rejections from now until `stop()`. */
function processWarningsAndRejections(): { warnings: Error[]; unhandled: unknown[]; stop: () => void } {
  const warnings: Error[] = [];
  const unhandled: unknown[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('warning', onWarning);
  process.on('unhandledRejection', onUnhandled);
  return { warnings, unhandled, stop: () => (process.off('warning', onWarning), process.off('unhandledRejection', onUnhandled)) };
}
