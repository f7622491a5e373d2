/**
 * What FdWatch counts against a thread (its descriptors left open, more than 64 retire it): only
 * what is still open. A handler that closes what it opens keeps its thread however many it opened.
 */
import { describe, expect, it } from 'vitest';
import { POOL, okData, runners, useBackends } from './helpers.js';

describe('worker-pool: descriptors a handler opens and closes', () => {
  const backends = useBackends();

  it.each(['fs', 'promises'])('a handler that opens two hundred descriptors and closes them all (%s: fs.openSync / fs.closeSync and fs.open / fs.close, or FileHandles) keeps its thread: only what is left open counts', async (via) => {
    const backend = backends.make({ maxThreads: 1, maxExecutionsPerThread: 0 });
    const runnerIds = new Set<string | undefined>();
    for (let i = 0; i < 3; i++) {
      const result = await backend.execute({ pluginId: POOL, handlerId: 'leaks-fds', input: { n: 200, close: true, via } });
      expect(okData(result)).toEqual({ closed: 200 });
      runnerIds.add(result.meta.runnerId);
    }
    expect(runnerIds.size).toBe(1);
    expect((await runners(backend)).retired['handles-left']).toBe(0);
  });
});
