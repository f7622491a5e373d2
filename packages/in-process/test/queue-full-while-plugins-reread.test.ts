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

/** Its second source is out of descriptors at the first read; read again, it waits for `open()`. */
class SecondReadWaits extends PluginRegistry {
  #open!: () => void;
  readonly #opened = new Promise<void>((resolve) => (this.#open = resolve));
  open(): void {
    this.#open();
  }
  override async addEach(sources: readonly PluginSource[], indices?: readonly number[]): Promise<readonly PluginLoadFailure[]> {
    if (indices) {
      await this.#opened;
      return [];
    }
    const failures = await super.addEach([sources[0]!]);
    const shortage = Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
    return [...failures, { source: 'plugins[1]', pluginId: undefined, error: new ValidationError('could not read plugins[1]', { cause: shortage }) }];
  }
}

it('counts executions waiting for a plugin folder read again against maxQueue with those running', async () => {
  const registry = new SecondReadWaits();
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic, fixturePlugins.cjs], registry, workspace: false, maxConcurrency: 1, maxQueue: 1 });
  const abort = new AbortController();
  try {
    let listening!: () => void;
    const heard = new Promise<void>((resolve) => (listening = resolve));
    const running = backend.execute({ pluginId: BASIC, handlerId: 'respects-signal', input: {} }, { signal: abort.signal, onEvent: () => listening() });
    await heard;
    // The one slot is taken; the folder is read again by the next execution, which waits for it.
    const waiting = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
    const beyond = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 });
    const stats = await backend.stats();
    expect(stats.active).toBe(1);
    expect(stats.queued).toBeLessThanOrEqual(stats.maxQueue);
    expectError(await Promise.race([beyond, new Promise<'still waiting'>((resolve) => setImmediate(() => resolve('still waiting')))]) as never, 'QUEUE_FULL');
    registry.open();
    abort.abort();
    expectError(await running, 'ABORTED');
    expectOk(await waiting);
  } finally {
    registry.open();
    abort.abort();
    await backend.shutdown();
  }
});
