/**
 * A stopped in-process execution (its time limit, the caller's abort, shutdown) gives its slot back
 * at once, and its result comes once its workspace is gone, as on the backends that end their
 * runner: a host that exits on the result (a CLI) leaves no directory behind. Here each workspace
 * takes 200 ms to remove (a slow disk), and the handler honours ctx.signal at once.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BASIC, expectError, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { WorkspaceManager, type WorkspaceLease } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterEach, expect, it } from 'vitest';

/** Each lease's removal waits 200 ms before it begins. */
class RemovesSlowly extends WorkspaceManager {
  override async acquire(executionId: string): Promise<WorkspaceLease> {
    const lease = await super.acquire(executionId);
    const release = lease.release.bind(lease);
    return Object.assign(lease, { release: () => new Promise((resolve) => setTimeout(resolve, 200)).then(release) });
  }
}

let root: string | undefined;
let backend: InProcessBackend | undefined;

afterEach(async () => {
  await backend?.shutdown({ timeoutMs: 1000 });
  backend = undefined;
  if (root) await rm(root, { recursive: true, force: true });
});

async function slowBackend(): Promise<InProcessBackend> {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-stopped-workspace-'));
  return (backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace: new RemovesSlowly({ root }), maxConcurrency: 1 }));
}

/** What is left under the root at the moment `result` resolves. */
const leftAtResult = <T>(result: Promise<T>): Promise<[T, string[]]> => result.then(async (settled) => [settled, await readdir(root!)]);

it('a TIMEOUT comes once its workspace is removed', async () => {
  const backend = await slowBackend();
  const [result, left] = await leftAtResult(backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 60_000 } }, { timeoutMs: 50 }));
  expectError(result, 'TIMEOUT');
  expect(left).toEqual([]);
});

it("the caller's abort of a running execution comes once its workspace is removed", async () => {
  const backend = await slowBackend();
  const caller = new AbortController();
  // Aborted once the handler says it listens for ctx.signal: it runs.
  const running = leftAtResult(backend.execute({ pluginId: BASIC, handlerId: 'respects-signal' }, { signal: caller.signal, onEvent: () => caller.abort() }));
  const [result, left] = await running;
  expectError(result, 'ABORTED');
  expect(result.ok || result.error.details).toMatchObject({ phase: 'running' });
  expect(left).toEqual([]);
});

it("shutdown()'s stop of a running execution comes once its workspace is removed, and its slot went back at once", async () => {
  const backend = await slowBackend();
  let down: Promise<void> | undefined;
  const running = leftAtResult(backend.execute({ pluginId: BASIC, handlerId: 'respects-signal' }, { onEvent: () => (down = backend.shutdown({ timeoutMs: 0 })) }));
  const [result, left] = await running;
  expectError(result, 'SHUTTING_DOWN');
  expect(left).toEqual([]);
  await down;
  expect((await backend.stats()).active).toBe(0);
});
