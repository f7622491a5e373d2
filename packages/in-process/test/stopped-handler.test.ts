/**
 * A handler the in-process backend cannot stop goes on after its TIMEOUT: its slot goes back at
 * once, shutdown() does not wait for it without end, and what it wrote to its workspace goes once
 * it has settled.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expectError, expectOk, waitFor } from '@kb-labs/plugin-execution-conformance';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterAll, describe, expect, it } from 'vitest';

const plugin = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'lifetime-plugin');
const root = mkdtempSync(path.join(os.tmpdir(), 'kb-in-process-stopped-'));
const stops: string[] = [];

afterAll(() => {
  for (const stop of stops) (globalThis as Record<string, unknown>)[stop] = true;
  rmSync(root, { recursive: true, force: true });
});

describe('a timed-out in-process handler that goes on writing to its workspace', () => {
  it('gives its slot back at once, does not hold up shutdown(), and has its workspace removed once it settles', async () => {
    const stop = `kbStopWriter${Date.now()}`;
    stops.push(stop);
    const backend = new InProcessBackend({ plugins: [plugin], workspace: { root }, maxConcurrency: 1 });
    const timedOut = await backend.execute({ pluginId: '@test/lifetime', handlerId: 'writes-on', input: { stop } }, { timeoutMs: 200 });
    expectError(timedOut, 'TIMEOUT');
    // Its workspace, the only one under the root.
    const [leased] = readdirSync(root);
    const dir = path.join(root, leased!);
    // The one slot is free: the next execution runs while the first handler still writes.
    expectOk(await backend.execute({ pluginId: '@test/lifetime', handlerId: 'quick' }));
    expect((await backend.stats()).active).toBe(0);
    // It writes on (its workspace's removal races it): shutdown() goes on without it.
    await backend.shutdown({ timeoutMs: 300 });
    // Once it settles, what it wrote goes.
    (globalThis as Record<string, unknown>)[stop] = true;
    await waitFor(() => !existsSync(dir), 5000);
  });
});

describe('a handler that returns leaving a tree in its workspace that takes seconds to remove', () => {
  it('gets its result while the removal goes on in the background (its slot held until it is done), which ends on its own after shutdown()', async () => {
    const deep = mkdtempSync(path.join(os.tmpdir(), 'kb-in-process-deep-'));
    const backend = new InProcessBackend({ plugins: [plugin], workspace: { root: deep }, maxConcurrency: 1 });
    try {
      const result = await backend.execute({ pluginId: '@test/lifetime', handlerId: 'deep-tree', input: { chains: 60 } }, { timeoutMs: 30_000 });
      expectOk(result);
      // Before, the result waited for the whole removal (seconds to minutes past the handler's return).
      expect(readdirSync(deep)).toHaveLength(1);
      expect((await backend.stats()).active).toBe(1);
      await backend.shutdown({ timeoutMs: 500 });
      await waitFor(() => readdirSync(deep).length === 0, 120_000);
    } finally {
      rmSync(deep, { recursive: true, force: true });
    }
  }, 150_000);
});
