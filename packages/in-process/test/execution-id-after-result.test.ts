/**
 * An execution id may be used again once its execution is over (a retry under a job's own id):
 * also when its workspace's removal outlasts the result (a plugin's deep tree goes on being removed
 * in the background).
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BASIC, expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { WorkspaceManager, type WorkspaceLease } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterEach, expect, it } from 'vitest';

/** Each lease's removal waits for `open()` (a tree that takes long to remove). */
class SlowRemoval extends WorkspaceManager {
  #open!: () => void;
  readonly #opened = new Promise<void>((resolve) => (this.#open = resolve));
  removing = 0;
  open(): void {
    this.#open();
  }
  override async acquire(executionId: string): Promise<WorkspaceLease> {
    const lease = await super.acquire(executionId);
    const release = async () => {
      this.removing++;
      await this.#opened;
      await lease.release();
    };
    return {
      executionId: lease.executionId,
      dir: lease.dir,
      get released() {
        return lease.released;
      },
      release,
      keep: () => lease.keep(),
      [Symbol.asyncDispose]: release,
    };
  }
}

let root: string | undefined;
let backend: InProcessBackend | undefined;

afterEach(async () => {
  await backend?.shutdown({ timeoutMs: 1000 });
  if (root) await rm(root, { recursive: true, force: true });
});

it('an execution id is free for the next execution once the result is out, while its workspace is still being removed', async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-id-after-result-'));
  const workspace = new SlowRemoval({ root });
  backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace });
  const first = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'first', executionId: 'job-1' });
  expectOk(first);
  expect(workspace.removing).toBe(1);
  const retried = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'again', executionId: 'job-1' });
  expectOk(retried);
  expect(retried.data).toBe('again');
  workspace.open();
  await waitFor(async () => (await readdir(root!)).length === 0);
});
