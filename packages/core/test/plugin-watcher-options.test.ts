import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { PluginReloadEvent, RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PluginWatcher } from '../src/host/plugin-watcher.js';
import { DEBOUNCE_MS, registeredAt, sleep, waitFor } from './watch-helpers.js';

// The watch option's debounce, the writes its manifest declares, and several plugins watched at once.
let dir: string;
let watcher: PluginWatcher | undefined;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-core-watch-options-'));
});
afterEach(async () => {
  watcher?.close();
  watcher = undefined;
  await rm(dir, { recursive: true, force: true });
});

const plugin = (id = '@t/w', root = dir, manifest: object = {}): RegisteredPlugin => registeredAt(root, id, manifest);

/** Watch `watched` with these options, collecting its reload events. */
async function watchWith(options: { debounceMs?: number }, watched = plugin()): Promise<PluginReloadEvent[]> {
  const events: PluginReloadEvent[] = [];
  watcher?.close();
  watcher = new PluginWatcher({ ...options, onReload: (event) => events.push(event) }, async () => watched);
  await watcher.watch(watched);
  return events;
}

describe('PluginWatcher: the writes its manifest declares', () => {
  it('a declared write file (counter.json) written reloads nothing; a file next to it still does', async () => {
    const events = await watchWith({ debounceMs: DEBOUNCE_MS }, plugin('@t/w', dir, { permissions: { fs: { write: ['counter.json'] } } }));
    await writeFile(path.join(dir, 'counter.json'), '1');
    await writeFile(path.join(dir, 'counter.json'), '2');
    await sleep(DEBOUNCE_MS * 5);
    expect(events).toEqual([]);
    await writeFile(path.join(dir, 'h.mjs'), 'export default () => 1;');
    await waitFor(() => events.length === 1);
    expect(events[0]).toMatchObject({ ok: true, changed: ['h.mjs'] });
  });

  it('a write folder (data) does not hide a file whose name begins with its name (database.js)', async () => {
    await mkdir(path.join(dir, 'data'));
    const events = await watchWith({ debounceMs: DEBOUNCE_MS }, plugin('@t/w', dir, { permissions: { fs: { write: ['data'] } } }));
    await writeFile(path.join(dir, 'data', 'rows.json'), '[]');
    await writeFile(path.join(dir, 'database.js'), 'export default 1;');
    await waitFor(() => events.length === 1);
    expect(events[0]).toMatchObject({ ok: true, changed: ['database.js'] });
  });

  it('a folder the reloaded manifest no longer lets its handlers write (data) is watched from then on', async () => {
    await mkdir(path.join(dir, 'data'));
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => plugin());
    await watcher.watch(plugin('@t/w', dir, { permissions: { fs: { write: ['data'] } } }));
    // The manifest saved without the write: the reload installs it.
    await writeFile(path.join(dir, 'kb.plugin.json'), '{}');
    await waitFor(() => events.length === 1);
    // Written before the marker: seen first, in the marker's reload or one before it.
    await writeFile(path.join(dir, 'data', 'helper.mjs'), 'export default 1;');
    await writeFile(path.join(dir, 'marker.js'), '1');
    await waitFor(() => events.some((event) => event.changed.includes('marker.js')));
    expect(events.slice(1).flatMap((event) => event.changed)).toContain(path.join('data', 'helper.mjs'));
  });
});

/**
 * Writes `names` in `dir`, `gapMs` apart, and whether every gap stayed under `underMs` (a machine
 * that stalled past it wrote them further apart than the test means: the try is made again).
 */
async function writtenApart(names: string[], gapMs: number, underMs: number): Promise<boolean> {
  let last = 0;
  let kept = true;
  for (const name of names) {
    const now = performance.now();
    if (last && now - last >= underMs) kept = false;
    last = now;
    await writeFile(path.join(dir, name), '1');
    await sleep(gapMs);
  }
  return kept;
}

/**
 * Runs `attempt` (watching afresh each time) until a try whose writes kept their spacing, ten at most
 * (three were all lost once, beside two other test runs and three more processes on two cores).
 */
async function withSpacingKept(attempt: () => Promise<boolean>): Promise<void> {
  for (let tries = 0; tries < 10; tries++) {
    if (await attempt()) return;
    watcher?.close();
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
  }
  throw new Error('this machine stalled past the spacing in ten tries');
}

describe('PluginWatcher: debounce', () => {
  it('honours debounceMs: two changes 150 ms apart, within it but not within the default, are one reload', async () => {
    // Longer than the default (100), so that the default in its place would make two.
    const debounceMs = 400;
    await withSpacingKept(async () => {
      const events = await watchWith({ debounceMs });
      if (!(await writtenApart(['a.js', 'b.js'], 150, debounceMs - 50))) return false;
      await waitFor(() => events.length > 0);
      await sleep(debounceMs);
      expect(events.map((event) => event.changed)).toEqual([['a.js', 'b.js']]);
      return true;
    });
  });

  it('the default (100 ms): changes a quarter of it apart are one reload; changes 3× it apart are two', async () => {
    await withSpacingKept(async () => {
      const events = await watchWith({});
      if (!(await writtenApart(['a.js', 'b.js', 'c.js', 'd.js'], 25, 90))) return false;
      await waitFor(() => events.length > 0);
      await sleep(300);
      expect(events.map((event) => event.changed)).toEqual([['a.js', 'b.js', 'c.js', 'd.js']]);
      return true;
    });
    const events = await watchWith({});
    await writeFile(path.join(dir, 'e.js'), '1');
    await sleep(300);
    await writeFile(path.join(dir, 'f.js'), '1');
    await waitFor(() => events.length === 2);
    expect(events.map((event) => event.changed)).toEqual([['e.js'], ['f.js']]);
  });
});

describe('PluginWatcher: several plugins', () => {
  it('watchAll() watches every plugin given, each reloaded for its own changes', async () => {
    const roots = ['one', 'two', 'three'].map((name) => path.join(dir, name));
    await Promise.all(roots.map((root) => mkdir(root)));
    const plugins = roots.map((root, i) => plugin(`@t/p${i}`, root));
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async (id) => plugins.find((p) => p.id === id)!);
    await watcher.watchAll(plugins);
    for (const root of roots) await writeFile(path.join(root, 'h.mjs'), '1');
    await waitFor(() => events.length === 3);
    expect(events.map((event) => [event.pluginId, event.changed]).sort()).toEqual([
      ['@t/p0', ['h.mjs']],
      ['@t/p1', ['h.mjs']],
      ['@t/p2', ['h.mjs']],
    ]);
  });
});
