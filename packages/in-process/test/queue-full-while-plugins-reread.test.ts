/**
 * maxQueue bounds the executions waiting across the whole backend: those waiting for a plugin
 * folder read again (one that could not be read for want of descriptors, docs/reliability.md)
 * count with those running and waiting for a slot, as at first use. One more gets QUEUE_FULL at
 * once, and stats().queued never says more than maxQueue.
 */
import { BASIC, expectError, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { PluginRegistry, ValidationError, type PluginLoadFailure, type PluginSource } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { expect, it } from 'vitest';

const shortage = Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
const unread: PluginLoadFailure = { source: 'plugins[1]', pluginId: undefined, error: new ValidationError('could not read plugins[1]', { cause: shortage }) };

/** Its second source is out of descriptors at the first read (and the `shortReads - 1` reads after it); read again, it waits for `open()`. */
class SecondReadWaits extends PluginRegistry {
  #open!: () => void;
  readonly #opened = new Promise<void>((resolve) => (this.#open = resolve));
  #shortReads: number;
  constructor(shortReads = 1) {
    super();
    this.#shortReads = shortReads;
  }
  open(): void {
    this.#open();
  }
  override async addEach(sources: readonly PluginSource[], indices?: readonly number[]): Promise<readonly PluginLoadFailure[]> {
    const short = this.#shortReads-- > 0;
    if (indices) {
      await this.#opened;
      return short ? [unread] : [];
    }
    return [...(await super.addEach([sources[0]!])), unread];
  }
}

/** An execution of BASIC's `respects-signal` that runs until `abort`: `{ running }` once it runs (its result, wrapped, is not awaited here). */
async function runningUntilAborted(backend: InProcessBackend, abort: AbortController) {
  let listening!: () => void;
  const heard = new Promise<void>((resolve) => (listening = resolve));
  const running = backend.execute({ pluginId: BASIC, handlerId: 'respects-signal', input: {} }, { signal: abort.signal, onEvent: () => listening() });
  await heard;
  return { running };
}

/** What `execution` has come to by the next turn of the loop: 'still waiting' if nothing. */
function byNextTurn<T>(execution: Promise<T>): Promise<T | 'still waiting'> {
  return Promise.race([execution, new Promise<'still waiting'>((resolve) => setImmediate(() => resolve('still waiting')))]);
}

/** Lets the folder read go on and the running one stop: the waiting one then runs. */
async function release(registry: SecondReadWaits, abort: AbortController, running: Promise<unknown>, waiting: Promise<unknown>): Promise<void> {
  registry.open();
  abort.abort();
  expectError((await running) as never, 'ABORTED');
  expectOk((await waiting) as never);
}

it('counts executions waiting for a plugin folder read again against maxQueue with those running', async () => {
  const registry = new SecondReadWaits();
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic, fixturePlugins.cjs], registry, workspace: false, maxConcurrency: 1, maxQueue: 1 });
  const abort = new AbortController();
  try {
    const { running } = await runningUntilAborted(backend, abort);
    // The one slot is taken; the folder is read again by the next execution, which waits for it.
    const waiting = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
    const beyond = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 });
    const stats = await backend.stats();
    expect(stats.active).toBe(1);
    expect(stats.queued).toBeLessThanOrEqual(stats.maxQueue);
    expectError((await byNextTurn(beyond)) as never, 'QUEUE_FULL');
    await release(registry, abort, running, waiting);
  } finally {
    registry.open();
    abort.abort();
    await backend.shutdown();
  }
});

it("counts a plugin's running executions against its perPluginConcurrency while the folder is read again: one that could neither run nor wait is QUEUE_FULL at once", async () => {
  const registry = new SecondReadWaits();
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic, fixturePlugins.cjs], registry, workspace: false, maxConcurrency: 4, perPluginConcurrency: 1, maxQueue: 1 });
  const abort = new AbortController();
  try {
    const { running } = await runningUntilAborted(backend, abort);
    // Its plugin's cap is taken: the next waits for the read, then in the queue; the one after has no room.
    const waiting = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
    const beyond = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 });
    const refused = await byNextTurn(beyond);
    // Before (the running one not counted): 'still waiting', refused only once the folder was read.
    expect(refused === 'still waiting' ? refused : refused.ok ? 'ok' : refused.error.code).toBe('QUEUE_FULL');
    await release(registry, abort, running, waiting);
  } finally {
    registry.open();
    abort.abort();
    await backend.shutdown();
  }
});

it('forgets the executions that waited for a read once they are under way: the next read counts none of them against the plugin\'s cap', async () => {
  // plugins[1] short at the first read and at the one after.
  const registry = new SecondReadWaits(2);
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic, fixturePlugins.cjs], registry, workspace: false, maxConcurrency: 4, perPluginConcurrency: 1, maxQueue: 1 });
  try {
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 0 }));
    // Two wait for the folder read again (one to run, one in the queue), then run.
    const both = [backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }), backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 })];
    registry.open();
    for (const result of await Promise.all(both)) expectOk(result);
    // Nothing runs or waits now: the third read lets it run (counted still, those two filled the cap and the queue).
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 3 }));
  } finally {
    registry.open();
    await backend.shutdown();
  }
});
