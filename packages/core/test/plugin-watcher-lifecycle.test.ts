import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ValidationError, type PluginReloadEvent, type RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PluginWatcher } from '../src/host/plugin-watcher.js';
import { DEBOUNCE_MS, registeredAt, sleep, waitFor } from './watch-helpers.js';

// What watch(), unwatch() and close() promise, and what one reload reports.
let dir: string;
let watcher: PluginWatcher | undefined;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-core-watch-life-'));
});
afterEach(async () => {
  watcher?.close();
  watcher = undefined;
  await rm(dir, { recursive: true, force: true });
});

const plugin = (manifest: object = {}): RegisteredPlugin => registeredAt(dir, '@t/w', manifest);

/** A negative: give a reload every chance to happen. */
const settle = () => sleep(DEBOUNCE_MS * 5);

describe('PluginWatcher: watch, unwatch and close', () => {
  it('a plugin watched twice (the same id) is reloaded once per change', async () => {
    let calls = 0;
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS }, async () => (calls++, plugin()));
    await watcher.watch(plugin());
    await watcher.watch(plugin());
    await writeFile(path.join(dir, 'a.js'), '1');
    await waitFor(() => calls > 0);
    await settle();
    expect(calls).toBe(1);
  });

  it('watch() after close() watches nothing', async () => {
    let calls = 0;
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS }, async () => (calls++, plugin()));
    watcher.close();
    await watcher.watch(plugin());
    await writeFile(path.join(dir, 'a.js'), '1');
    await settle();
    expect(calls).toBe(0);
    expect(watcher.problems()).toEqual([]);
  });

  it('a reload under way at close(), or at unwatch(), is not reported when it ends, nor left in problems()', async () => {
    for (const stop of [(w: PluginWatcher) => w.close(), (w: PluginWatcher) => w.unwatch('@t/w')]) {
      const events: PluginReloadEvent[] = [];
      let release!: () => void;
      let started = false;
      watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => {
        started = true;
        await new Promise<void>((resolve) => (release = resolve));
        throw new ValidationError('the backend is shutting down');
      });
      await watcher.watch(plugin());
      await writeFile(path.join(dir, 'a.js'), String(Math.random()));
      await waitFor(() => started);
      stop(watcher);
      release();
      await settle();
      expect(events).toEqual([]);
      expect(watcher.problems()).toEqual([]);
      watcher.close();
    }
  });

  it('unwatch(): its failure leaves problems(), and changes in its folder reload nothing', async () => {
    let calls = 0;
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: () => {} }, async () => {
      calls++;
      throw new ValidationError('bad manifest');
    });
    await watcher.watch(plugin());
    await writeFile(path.join(dir, 'kb.plugin.json'), '{');
    await waitFor(() => watcher!.problems().length === 1);
    watcher.unwatch('@t/w');
    expect(watcher.problems()).toEqual([]);
    await writeFile(path.join(dir, 'kb.plugin.json'), '{}');
    await settle();
    expect(calls).toBe(1);
  });

  it('with onReload, a failed reload is told to it alone: no process warning', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => {
      throw new ValidationError('bad manifest');
    });
    try {
      await watcher.watch(plugin());
      await writeFile(path.join(dir, 'kb.plugin.json'), '{');
      await waitFor(() => events.length === 1);
      await settle();
      expect(events[0]).toMatchObject({ ok: false, error: { message: 'bad manifest' } });
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('watch() resolves once every folder is watched: a change deep in the tree made right after is heard', async () => {
    const deep = path.join(dir, 'a', 'b', 'c', 'd');
    await mkdir(deep, { recursive: true });
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => plugin());
    await watcher.watch(plugin());
    await writeFile(path.join(deep, 'x.js'), '1');
    await waitFor(() => events.length === 1);
    expect(events[0]).toMatchObject({ ok: true, changed: [path.join('a', 'b', 'c', 'd', 'x.js')] });
  });

  it('reports the changed paths sorted, whatever order they changed in', async () => {
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS * 5, onReload: (event) => events.push(event) }, async () => plugin());
    await watcher.watch(plugin());
    for (const name of ['z.js', 'm.js', 'a.js']) await writeFile(path.join(dir, name), '1');
    await waitFor(() => events.length === 1);
    expect(events[0]).toMatchObject({ ok: true, changed: ['a.js', 'm.js', 'z.js'] });
  });

  it('a write folder the manifest gains at a reload is left unwatched from then on', async () => {
    await mkdir(path.join(dir, 'data'));
    const events: PluginReloadEvent[] = [];
    const writer = () => plugin({ permissions: { fs: { write: ['data'] } } });
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => writer());
    await watcher.watch(plugin());
    await writeFile(path.join(dir, 'kb.plugin.json'), '{"permissions":{"fs":{"write":["data"]}}}');
    await waitFor(() => events.length === 1);
    await settle();
    const seen = events.length;
    await writeFile(path.join(dir, 'data', 'counter.json'), '1');
    await settle();
    expect(events).toHaveLength(seen);
  });

  it('changes each closer than debounceMs to the one before are one reload', async () => {
    const debounceMs = 400;
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs, onReload: (event) => events.push(event) }, async () => plugin());
    await watcher.watch(plugin());
    for (let i = 0; i < 5; i++) {
      await writeFile(path.join(dir, `f${i}.js`), '1');
      await sleep(debounceMs / 5);
    }
    await waitFor(() => events.length > 0);
    await sleep(debounceMs * 2);
    expect(events).toHaveLength(1);
    expect(events[0]!.changed).toEqual(['f0.js', 'f1.js', 'f2.js', 'f3.js', 'f4.js']);
  });

  it("an editor's save by rename (x.mjs.tmp written, then renamed over x.mjs) is one reload naming x.mjs", async () => {
    await writeFile(path.join(dir, 'x.mjs'), 'export default () => 1;');
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => plugin());
    await watcher.watch(plugin());
    await writeFile(path.join(dir, 'x.mjs.tmp'), 'export default () => 2;');
    await rename(path.join(dir, 'x.mjs.tmp'), path.join(dir, 'x.mjs'));
    await waitFor(() => events.length === 1);
    await settle();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ ok: true, changed: expect.arrayContaining(['x.mjs']) });
    // Watched as before: the file replaced is no folder, and the next save is heard.
    await writeFile(path.join(dir, 'x.mjs'), 'export default () => 3;');
    await waitFor(() => events.length === 2);
    expect(events[1]).toMatchObject({ ok: true, changed: ['x.mjs'] });
  });

  it('close() called twice, and unwatch() of an id never watched, throw nothing; the last leaves the watched plugin watched', async () => {
    const events: PluginReloadEvent[] = [];
    watcher = new PluginWatcher({ debounceMs: DEBOUNCE_MS, onReload: (event) => events.push(event) }, async () => plugin());
    await watcher.watch(plugin());
    watcher.unwatch('@t/never-watched');
    await writeFile(path.join(dir, 'a.js'), '1');
    await waitFor(() => events.length === 1);
    watcher.close();
    watcher.close();
    await writeFile(path.join(dir, 'a.js'), '2');
    await settle();
    expect(events).toHaveLength(1);
    expect(watcher.problems()).toEqual([]);
  });
});
