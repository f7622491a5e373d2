/**
 * A workspace still being made when its execution's wait was given up (the caller's abort, a
 * second later: ABORTED) is given back when it comes; a shutdown() begun meanwhile waits for that
 * (bounded), so that nothing is made under the root once shutdown() has resolved.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BASIC, expectError, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { WorkspaceManager, type WorkspaceLease } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterEach, expect, it } from 'vitest';

/** Each acquire waits for `open()` (a file system that stops answering, then answers again); `asked` and `made` count them. */
class AcquireWaits extends WorkspaceManager {
  asked = 0;
  made = 0;
  #open!: () => void;
  readonly #opened = new Promise<void>((resolve) => (this.#open = resolve));
  open(): void {
    this.#open();
  }
  override async acquire(executionId: string): Promise<WorkspaceLease> {
    this.asked++;
    await this.#opened;
    const lease = await super.acquire(executionId);
    this.made++;
    return lease;
  }
}

let root: string | undefined;

afterEach(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

it('shutdown() waits for a workspace still being made for an execution already answered ABORTED, and it is removed', async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-late-workspace-'));
  const workspace = new AcquireWaits({ root: path.join(root, 'ws') });
  const backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace });
  const caller = new AbortController();
  const aborted = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'late' }, { signal: caller.signal });
  await waitFor(() => workspace.asked === 1);
  caller.abort();
  expectError(await aborted, 'ABORTED');
  expect(workspace.made).toBe(0);
  const shutDown = backend.shutdown({ timeoutMs: 0 });
  // The file system answers again while shutdown() runs.
  workspace.open();
  await shutDown;
  expect(workspace.made).toBe(1);
  expect(existsSync(workspace.root) ? await readdir(workspace.root) : []).toEqual([]);
});
