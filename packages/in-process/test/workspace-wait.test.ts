/**
 * A workspace whose making does not end (a file system that does not answer, a host's own
 * WorkspaceManager that never settles): the caller's abort still ends that execution, those admitted
 * after it are not held behind it, and a lease made after the abort is released.
 */
import { getEventListeners } from 'node:events';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BASIC, expectError, expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { WorkspaceManager, type WorkspaceLease } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterEach, expect, it } from 'vitest';

/** Its first acquire waits for `open()`; the others are as usual. */
class FirstAcquireWaits extends WorkspaceManager {
  #first = true;
  #open!: () => void;
  readonly #opened = new Promise<void>((resolve) => (this.#open = resolve));
  open(): void {
    this.#open();
  }
  /** Its first acquire was asked for, and waits (a fixed delay would race the plugins' load under a busy CI). */
  get waiting(): boolean {
    return !this.#first;
  }
  override acquire(executionId: string): Promise<WorkspaceLease> {
    if (!this.#first) return super.acquire(executionId);
    this.#first = false;
    return this.#opened.then(() => super.acquire(executionId));
  }
}

/** Each lease is handed over 300 ms after its directory is made (a slow path check, a loaded machine). */
class HandsOverLate extends WorkspaceManager {
  override async acquire(executionId: string): Promise<WorkspaceLease> {
    const lease = await super.acquire(executionId);
    await new Promise((resolve) => setTimeout(resolve, 300));
    return lease;
  }
}

const pending = <T>(promise: Promise<T>): Promise<T | 'still pending'> => Promise.race([promise, new Promise<'still pending'>((resolve) => setTimeout(() => resolve('still pending'), 10_000).unref())]);
let root: string | undefined;
let backend: InProcessBackend | undefined;

afterEach(async () => {
  await backend?.shutdown({ timeoutMs: 1000 });
  if (root) await rm(root, { recursive: true, force: true });
});

it('the caller\'s abort ends an execution whose workspace is still being made, and the next one runs', async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-workspace-wait-'));
  const workspace = new FirstAcquireWaits({ root });
  backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace });
  const caller = new AbortController();
  const stuck = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'stuck' }, { signal: caller.signal });
  const next = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'next' });
  await waitFor(() => workspace.waiting);
  caller.abort();
  const aborted = await pending(stuck);
  expect(aborted).not.toBe('still pending');
  expectError(aborted as Exclude<typeof aborted, 'still pending'>, 'ABORTED');
  const ran = await pending(next);
  expect(ran).not.toBe('still pending');
  expectOk(ran as Exclude<typeof ran, 'still pending'>);
  // The workspace made after the abort is removed: nothing is left under the root.
  workspace.open();
  await waitFor(async () => (await readdir(root!)).length === 0);
});

it('an abort that comes once the directory is made but before the lease is handed over: the result comes after the directory is gone', async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-workspace-wait-'));
  backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace: new HandsOverLate({ root }) });
  const caller = new AbortController();
  const aborted = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'late' }, { signal: caller.signal });
  await waitFor(async () => (await readdir(root!)).length === 1);
  caller.abort();
  expectError(await aborted, 'ABORTED');
  expect(await readdir(root)).toEqual([]);
});

it('shutdown() ends an execution whose workspace is still being made (SHUTTING_DOWN, never started), and the workspace made later is released', async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-workspace-wait-'));
  const workspace = new FirstAcquireWaits({ root });
  const closing = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace });
  const stuck = closing.execute({ pluginId: BASIC, handlerId: 'echo', input: 'stuck' });
  await waitFor(() => workspace.waiting);
  const shutDown = await pending(closing.shutdown({ timeoutMs: 200 }));
  expect(shutDown).not.toBe('still pending');
  const ended = await pending(stuck);
  expect(ended).not.toBe('still pending');
  const result = ended as Exclude<typeof ended, 'still pending'>;
  expectError(result, 'SHUTTING_DOWN');
  expect(result.error.details).toMatchObject({ phase: 'queued' });
  workspace.open();
  await waitFor(async () => (await readdir(root!)).length === 0);
});

it("one whose workspace is made, waiting its turn behind one whose workspace is still being made: its caller's abort ends it, its workspace gone when the result comes", async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-workspace-wait-'));
  const leased: string[] = [];
  const workspace = new (class extends FirstAcquireWaits {
    override async acquire(executionId: string): Promise<WorkspaceLease> {
      const lease = await super.acquire(executionId);
      leased.push(executionId);
      return lease;
    }
  })({ root });
  backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace });
  const stuck = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'stuck' });
  const caller = new AbortController();
  const behind = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'behind', executionId: 'behind' }, { signal: caller.signal });
  await waitFor(() => leased.includes('behind'));
  caller.abort();
  const aborted = await pending(behind.then(async (result) => ({ result, left: await readdir(root!) })));
  expect(aborted).not.toBe('still pending');
  const { result, left } = aborted as Exclude<typeof aborted, 'still pending'>;
  expectError(result, 'ABORTED');
  expect(result.error.details).toMatchObject({ phase: 'queued' });
  expect(left).toEqual([]);
  // The one ahead of it goes on once its workspace is made.
  workspace.open();
  expectOk(await stuck);
});

it("shutdown() ends an execution whose workspace is never made: the caller's signal keeps no listener of it", async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-workspace-wait-'));
  const workspace = new FirstAcquireWaits({ root });
  const closing = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace });
  // A signal that outlives the backend (one for a batch, a server's own).
  const caller = new AbortController();
  const stuck = closing.execute({ pluginId: BASIC, handlerId: 'echo', input: 'stuck' }, { signal: caller.signal });
  await waitFor(() => workspace.waiting);
  await closing.shutdown({ timeoutMs: 200 });
  expectError(await stuck, 'SHUTTING_DOWN');
  expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0);
});
