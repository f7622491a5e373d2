/**
 * An execution still waiting for its plugins to load when shutdown() has ended its own wait
 * answers SHUTTING_DOWN (it never started) before shutdown() resolves, whenever they load, and
 * takes no slot nor workspace, which would otherwise be made (and removed) after shutdown() had
 * resolved.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BASIC, expectError, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { WorkspaceManager, type WorkspaceLease } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterEach, expect, it } from 'vitest';
import { LoadsWhenOpened } from './loads-when-opened.js';

/** Counts the workspaces asked for. */
class CountsAcquires extends WorkspaceManager {
  acquired = 0;
  override acquire(executionId: string): Promise<WorkspaceLease> {
    this.acquired++;
    return super.acquire(executionId);
  }
}

let root: string | undefined;

afterEach(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

it('its plugins still loading when shutdown() resolves, it has answered SHUTTING_DOWN already and makes no workspace once they load', async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-shutdown-loading-'));
  const registry = new LoadsWhenOpened();
  const workspace = new CountsAcquires({ root });
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic], registry, workspace });
  let settled = false;
  const waiting = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'late' }).finally(() => (settled = true));
  await backend.shutdown({ timeoutMs: 0 });
  // A host that awaited shutdown() holds every result of the executions it called before.
  expect(settled).toBe(true);
  registry.open();
  await registry.loaded;
  // What the backend does once they are read comes in the turns after.
  await new Promise((resolve) => setImmediate(resolve));
  const result = await waiting;
  expectError(result, 'SHUTTING_DOWN');
  expect(result.error.details).toMatchObject({ phase: 'queued' });
  // Worded as every other backend's refusal of an execution that never started: naming the backend.
  expect(result.error.message).toBe('The in-process backend shut down before this execution started');
  expect(workspace.acquired).toBe(0);
  expect(await readdir(root)).toEqual([]);
});
