import { BASIC, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { createExecutionBackend } from '@kb-labs/plugin-execution';
import { describe, expect, it } from 'vitest';

describe('unregisterPlugin() called while the plugins load at first use', () => {
  // Documented: such an execution "may run or get HANDLER_NOT_FOUND". The reason it is given must
  // not claim an order the caller did not use (it said the unregister was called before it).
  it.each(['in-process', 'worker-pool', 'subprocess'] as const)('%s: an execution called before the unregister is not told the unregister was called before it', async (type) => {
    await using backend = createExecutionBackend({ type, plugins: [fixturePlugins.basic], workspace: false });
    const first = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
    const unregistered = backend.unregisterPlugin(BASIC);
    expect(await unregistered).toBe(true);
    const result = await first;
    // The plugins are read after both calls were made: the unregister is under way by then.
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.code).toBe('HANDLER_NOT_FOUND');
    expect(!result.ok && result.error.message).toContain('an unregisterPlugin() of it is under way');
  });
});
