import { mkdirSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { PluginReloadEvent, RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PluginWatcher } from '../src/host/plugin-watcher.js';
import { DEBOUNCE_MS, registeredAt, waitFor } from './watch-helpers.js';

// Sub-folders of a plugin deleted and made again: the OS gives the new ones new watchers to find.
let dir: string;
let watcher: PluginWatcher | undefined;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-core-watch-sub-'));
});
afterEach(async () => {
  watcher?.close();
  watcher = undefined;
  await rm(dir, { recursive: true, force: true });
});

const plugin = (): RegisteredPlugin => registeredAt(dir);

/** Watch the plugin; resolves with its reload events, once the first change written by `change` has been reloaded and all is quiet. */
async function watchedThrough(change: () => void | Promise<void>): Promise<PluginReloadEvent[]> {
  const events: PluginReloadEvent[] = [];
  watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => plugin());
  await watcher.watch(plugin());
  await change();
  await waitFor(() => events.length >= 1);
  await new Promise((resolve) => setTimeout(resolve, DEBOUNCE_MS * 5));
  return events;
}

describe('PluginWatcher: sub-folders deleted and made again', () => {
  it('a tree deleted and made again at once (a clean build in one go): changes in its inner folders are heard', async () => {
    const inner = path.join(dir, 'dist', 'chunks');
    await mkdir(inner, { recursive: true });
    const events = await watchedThrough(() => {
      // In one turn of the loop: the watcher sees the new `dist` before it could see the old one gone.
      rmSync(path.join(dir, 'dist'), { recursive: true });
      mkdirSync(inner, { recursive: true });
    });
    const seen = events.length;
    await writeFile(path.join(inner, 'a.js'), '1');
    await waitFor(() => events.length > seen);
    expect(events.at(-1)).toMatchObject({ ok: true, changed: [path.join('dist', 'chunks', 'a.js')] });
  });

  it('a folder deleted leaves the folders whose names begin with its name watched (dist, dist-types)', async () => {
    await mkdir(path.join(dir, 'dist'));
    await mkdir(path.join(dir, 'dist-types'));
    const events = await watchedThrough(() => rm(path.join(dir, 'dist'), { recursive: true }));
    const seen = events.length;
    await writeFile(path.join(dir, 'dist-types', 'index.d.ts'), '1');
    await waitFor(() => events.length > seen);
    expect(events.at(-1)).toMatchObject({ ok: true, changed: [path.join('dist-types', 'index.d.ts')] });
  });
});
