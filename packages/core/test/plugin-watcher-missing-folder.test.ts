import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { PluginReloadEvent, RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PluginWatcher } from '../src/host/plugin-watcher.js';
import { DEBOUNCE_MS, registeredAt, waitFor } from './watch-helpers.js';

// A plugin registered as { root, manifest } reloads without its folder: the folder missing is no failure of the reload.
let dir: string;
let watcher: PluginWatcher | undefined;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-core-watch-missing-'));
});
afterEach(async () => {
  watcher?.close();
  watcher = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe('PluginWatcher: a plugin folder that does not exist', () => {
  it('one whose folder, and the folder above it, are made later (each on its own): watched once there, and reloaded', async () => {
    const root = path.join(dir, 'plugins', 'later');
    const plugin = (): RegisteredPlugin => registeredAt(root);
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => plugin());
    await watcher.watch(plugin());
    // Nothing changed yet, and nothing was reloaded: not "was not reloaded after a change".
    expect(watcher.problems()).toEqual([expect.stringMatching(/^plugin "@t\/w" is not watched: its folder cannot be watched: ENOENT/)]);
    // The folder above first: a reload that succeeds while the plugin folder is still missing.
    await mkdir(path.dirname(root));
    await waitFor(() => events.length === 1);
    await mkdir(root);
    await waitFor(() => events.length === 2);
    expect(watcher.problems()).toEqual([]);
    // Before: the plugin folder made after that reload was never watched, and this went unheard.
    await writeFile(path.join(root, 'h.mjs'), 'export default () => 1;');
    await waitFor(() => events.length === 3);
    expect(events[2]).toMatchObject({ ok: true, changed: ['h.mjs'] });
  });
});
