/**
 * The caller's abort in any turn of the event loop's microtasks between its workspace's coming and
 * the hand-over to the runner is heard: ABORTED at once, the handler never run. The window is a
 * few microtasks wide; the host's WorkspaceManager here aborts the caller's signal `ticks`
 * microtasks after each lease comes, for every width up to past the hand-over.
 */
import { getEventListeners } from 'node:events';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BASIC, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { WorkspaceManager, type WorkspaceLease } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterEach, expect, it } from 'vitest';

/** Aborts `caller` `ticks` microtasks after each lease it gives. */
class AbortsAfterLease extends WorkspaceManager {
  caller = new AbortController();
  ticks = 0;

  override async acquire(executionId: string): Promise<WorkspaceLease> {
    const lease = await super.acquire(executionId);
    const caller = this.caller;
    let later = Promise.resolve();
    for (let i = 0; i < this.ticks; i++) later = later.then(() => undefined);
    void later.then(() => caller.abort());
    return lease;
  }
}

let root: string | undefined;
let backend: InProcessBackend | undefined;

afterEach(async () => {
  await backend?.shutdown({ timeoutMs: 1000 });
  backend = undefined;
  if (root) await rm(root, { recursive: true, force: true });
});

it("an abort between the workspace's coming and the hand-over stops the execution at once", async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-abort-hand-over-'));
  const workspace = new AbortsAfterLease({ root });
  backend = new InProcessBackend({ plugins: [fixturePlugins.basic], workspace });
  const outcomes: string[] = [];
  for (let ticks = 0; ticks <= 12; ticks++) {
    workspace.caller = new AbortController();
    workspace.ticks = ticks;
    const { signal } = workspace.caller;
    // Waits a minute unless stopped (ctx.signal); a missed abort is its 1 s time limit.
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 60_000 } }, { signal, timeoutMs: 1000 });
    outcomes.push(`${ticks}: ${result.ok ? 'ok' : result.error.code}`);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  }
  expect(outcomes).toEqual(Array.from({ length: 13 }, (_, ticks) => `${ticks}: ABORTED`));
  expect(await readdir(root)).toEqual([]);
  expect((await backend.stats()).active).toBe(0);
});
