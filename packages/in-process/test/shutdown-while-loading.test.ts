/**
 * An execution still waiting for its plugins to load when shutdown() has ended its own wait: once
 * they load it answers SHUTTING_DOWN (it never started) without taking a slot or making a
 * workspace, which would otherwise be made (and removed) after shutdown() had resolved.
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

it('once its plugins load after shutdown() resolved, it answers SHUTTING_DOWN and makes no workspace', async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-shutdown-loading-'));
  const registry = new LoadsWhenOpened();
  const workspace = new CountsAcquires({ root });
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic], registry, workspace });
  const waiting = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'late' });
  await backend.shutdown({ timeoutMs: 0 });
  registry.open();
  const result = await waiting;
  expectError(result, 'SHUTTING_DOWN');
  expect(result.error.details).toMatchObject({ phase: 'queued' });
  // Worded as every other backend's refusal of an execution that never started: naming the backend.
  expect(result.error.message).toBe('The in-process backend shut down before this execution started');
  expect(workspace.acquired).toBe(0);
  expect(await readdir(root)).toEqual([]);
});
