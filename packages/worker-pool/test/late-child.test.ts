/**
 * A child a handler starts after its thread's checks (a few awaits after its answer) while the
 * thread then sleeps idle: a thread's children are collected by its own event loop, so the thread
 * must collect it before it is ended, or the child stays a zombie of the host.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { POOL, okData, runners, useBackends, waitFor } from './helpers.js';

describe.runIf(process.platform === 'linux')('worker-pool: an idle thread ended with a child its handler started after the answer', () => {
  const backends = useBackends();

  it.each(['shutdown()', 'its idle timeout'])('collects the child before it goes (%s): no zombie is left in the host', async (endedBy) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-wp-late-child-'));
    try {
      const backend = backends.make({ maxThreads: 1, minThreads: 0, idleTimeoutMs: endedBy === 'shutdown()' ? 60_000 : 200 });
      const pidFile = path.join(dir, 'pid');
      expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'spawns-after-answer', input: { pidFile } }))).toBe('answered');
      await waitFor(() => existsSync(pidFile));
      const pid = Number(readFileSync(pidFile, 'utf8'));
      if (endedBy === 'shutdown()') await backend.shutdown();
      else await waitFor(async () => (await runners(backend)).threads === 0, 5000);
      await waitFor(() => !existsSync(`/proc/${pid}`), 2000).catch(() => undefined);
      // Before: the thread slept waiting for a task while the child ran, was terminated, and the host's SIGKILL left the child a zombie ('Z').
      expect(existsSync(`/proc/${pid}`) ? readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]![0] : 'gone').toBe('gone');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
