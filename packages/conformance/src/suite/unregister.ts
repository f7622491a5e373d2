import { rm } from 'node:fs/promises';
import type { PluginReloadEvent } from '@kb-labs/plugin-execution-core';
import { expect, it } from 'vitest';
import { expectError, expectOk } from '../expect-result.js';
import { RELOADABLE } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';
import { DEBOUNCE_MS, HANDLER, edit, reloading, startedHolding, versionOf } from './reloading.js';

/** unregisterPlugin(): run inside describeReload's block (same capabilities, same plugin copies). */
export function unregisterTests(suite: SuiteContext, copyPlugin: () => Promise<string>): void {
  const { make } = suite;

  it('unregisterPlugin(): new executions get HANDLER_NOT_FOUND, one running finishes; the id registers again, from another folder or the same one edited, and runs that code', async () => {
    const dir = await copyPlugin();
    const backend = reloading(make({ plugins: [dir] }));
    expect(await versionOf(backend)).toBe('v1');
    const { running } = await startedHolding(backend);
    expect(await backend.unregisterPlugin(RELOADABLE)).toBe(true);
    const gone = await backend.execute({ pluginId: RELOADABLE, handlerId: 'version' });
    expectError(gone, 'HANDLER_NOT_FOUND');
    expect(gone.error.message).toContain(`"${RELOADABLE}" is not registered`);
    const old = await running;
    expectOk(old);
    expect(old.data).toBe('v1');
    expect(await backend.unregisterPlugin(RELOADABLE)).toBe(false);

    const other = await copyPlugin();
    await edit(other, HANDLER, "'v1'", "'v2'");
    expect(await backend.registerPlugin(other)).toMatchObject({ id: RELOADABLE, root: other, generation: 0 });
    expect(await versionOf(backend)).toBe('v2');
    expect(await backend.unregisterPlugin(RELOADABLE)).toBe(true);
    // The first folder again, edited since it was loaded: its code as it is now.
    await edit(dir, HANDLER, "'v1'", "'v3'");
    expect(await backend.registerPlugin(dir)).toMatchObject({ root: dir, generation: 0 });
    expect(await versionOf(backend)).toBe('v3');
  });

  it('unregisterPlugin(): VALIDATION_ERROR naming what was given for an id that is not a non-empty string (after shutdown too), SHUTTING_DOWN after shutdown', async () => {
    const backend = reloading(make());
    const bad: Array<[unknown, string]> = [
      ['', 'got an empty string'],
      [42, 'got a number (42)'],
      [undefined, 'got undefined'],
      [null, 'got null'],
      [new URL('file:///srv/plugins/x'), 'got an object (URL)'],
      [Symbol('id'), 'got symbol'],
    ];
    const refusals = async () => {
      for (const [id, says] of bad) {
        const error = await backend.unregisterPlugin(id as string).catch((e: unknown) => e);
        expect(error).toMatchObject({ code: 'VALIDATION_ERROR', details: { path: 'pluginId' } });
        expect((error as Error).message).toMatch(/^unregisterPlugin\(\) needs the id of a registered plugin/);
        expect((error as Error).message).toContain(says);
      }
    };
    await refusals();
    await backend.shutdown();
    expect(await backend.unregisterPlugin(RELOADABLE).catch((e: unknown) => e)).toMatchObject({ code: 'SHUTTING_DOWN' });
    await refusals();
  });

  unregisterOrderTests(suite, copyPlugin);
}

/** Plugin changes called without awaiting each other (in the order called), and the watcher. */
function unregisterOrderTests(suite: SuiteContext, copyPlugin: () => Promise<string>): void {
  const { make } = suite;
  it('unregisterPlugin() after a registerPlugin() not awaited: the calls take effect in the order made', async () => {
    const backend = reloading(make());
    const registering = backend.registerPlugin(await copyPlugin());
    expect(await backend.unregisterPlugin(RELOADABLE)).toBe(true);
    await registering;
    expectError(await backend.execute({ pluginId: RELOADABLE, handlerId: 'version' }), 'HANDLER_NOT_FOUND');
  });

  it('registerPlugin() and reloadPlugin() after an unregisterPlugin() not awaited: in the order made, the same folder or a new one; an execution called after the unregister, in the same tick, gets HANDLER_NOT_FOUND', async () => {
    const dir = await copyPlugin();
    const backend = reloading(make({ plugins: [dir] }));
    expect(await versionOf(backend)).toBe('v1');
    const before = backend.execute({ pluginId: RELOADABLE, handlerId: 'version' });
    const [unregistered, registered] = [backend.unregisterPlugin(RELOADABLE), backend.registerPlugin(dir)];
    const after = await backend.execute({ pluginId: RELOADABLE, handlerId: 'version' });
    expectError(after, 'HANDLER_NOT_FOUND');
    expect(after.error.message).toContain(`"${RELOADABLE}" is not registered: an unregisterPlugin() of it is under way`);
    expect(await unregistered).toBe(true);
    expect(await registered).toMatchObject({ id: RELOADABLE, root: dir, generation: 0 });
    expect(await before).toMatchObject({ ok: true, data: 'v1' });
    expect(await versionOf(backend)).toBe('v1');

    // A release switch to a new folder, with a reload after it, none awaited in between.
    const other = await copyPlugin();
    await edit(other, HANDLER, "'v1'", "'v2'");
    const calls = [backend.unregisterPlugin(RELOADABLE), backend.registerPlugin(other), backend.reloadPlugin(RELOADABLE)] as const;
    expect(await calls[0]).toBe(true);
    expect(await calls[1]).toMatchObject({ root: other, generation: 0 });
    expect(await calls[2]).toMatchObject({ root: other, generation: 1 });
    expect(await versionOf(backend)).toBe('v2');
    expect((await backend.health()).problems).toEqual([]);
  });

  it('watch: an unregistered plugin is no longer watched: its folder edited or deleted reloads nothing and is no problem of health()', async () => {
    const dir = await copyPlugin();
    const events: PluginReloadEvent[] = [];
    const backend = reloading(make({ plugins: [dir], watch: { debounceMs: DEBOUNCE_MS, onReload: (event: PluginReloadEvent) => events.push(event) } }));
    expect(await versionOf(backend)).toBe('v1');
    await backend.unregisterPlugin(RELOADABLE);
    await edit(dir, HANDLER, "'v1'", "'v2'");
    await rm(dir, { recursive: true, force: true });
    // A negative: give a reload, and the look-out for a deleted folder (every 250 ms), every chance.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(events).toEqual([]);
    const problems = (await backend.health()).problems.filter((problem) => problem.includes(RELOADABLE) || problem.includes(dir));
    expect(problems).toEqual([]);
  });
}
