/**
 * A child a handler starts after its thread's checks (a few awaits after its answer) while the
 * thread then sleeps idle, or while its retiring thread collects the others: a thread's children
 * are collected by its own event loop, so the thread must collect it before it is ended, or the
 * child stays a zombie of the host.
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

describe.runIf(process.platform === 'linux')('worker-pool: a retiring thread whose handler left code that starts children', () => {
  const backends = useBackends();

  it('collects every child before it goes, those started while it collects the first ones included: no zombie is left in the host', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-wp-reap-spawning-'));
    try {
      const backend = backends.make({ maxThreads: 1 });
      const pidFile = path.join(dir, 'pids');
      expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'spawns-every-ms', input: { pidFile } }))).toBe('answered');
      await waitFor(async () => (await runners(backend)).retired['handles-left'] === 1, 5000);
      const pids = readFileSync(pidFile, 'utf8').trim().split('\n').map(Number);
      const state = (pid: number) => (existsSync(`/proc/${pid}`) ? readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]![0] : 'gone');
      await waitFor(() => pids.every((pid) => state(pid) === 'gone'), 2000).catch(() => undefined);
      // Before: a child the interval started while the thread collected the first one was listed but never collected; the host killed it once the thread was gone, a zombie ('Z').
      expect(pids.map(state).filter((s) => s !== 'gone')).toEqual([]);
      expect((await runners(backend)).crashed).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
