import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { WorkspaceManager } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { expectError, expectOk } from '../expect-result.js';
import { BASIC } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';

export function describeWorkspace(suite: SuiteContext): void {
  describe('workspace', () => {
    leaseTests(suite);
    releaseTests(suite);
  });
}

/** A private directory per execution, removed afterwards unless kept. */
function leaseTests(suite: SuiteContext): void {
  const { make, capabilities } = suite;
  it('gives each execution a private directory, lists its artifacts and removes it', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'writes-workspace', input: { text: 'hi' } });
    expectOk(result);
    const dir = (result.data as { workspace: string }).workspace;
    if (!capabilities.workspaceOnRunner) expect(path.dirname(dir)).toBe(suite.root());
    expect(result.meta.artifacts).toEqual(['out/report.txt', 'summary.json']);
    expect(result.meta.artifactsTruncated).toBeUndefined();
    expect(result.meta.workspaceDir).toBeUndefined();
    await expect(stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('says when the artifact list is cut at its cap (1000), where a host could not tell it from the whole list', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'writes-workspace', input: { text: 'many', many: 1005 } }, { timeoutMs: 30_000 });
    expectOk(result);
    expect(result.meta.artifacts).toHaveLength(1000);
    expect(result.meta.artifactsTruncated).toBe(true);
  });

  it('keeps the directory when asked, and reports it in meta', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'writes-workspace', input: { text: 'kept' } }, { keepWorkspace: true });
    expectOk(result);
    const dir = result.meta.workspaceDir!;
    expect(await readFile(path.join(dir, 'out', 'report.txt'), 'utf8')).toBe('kept');
    expect(((await stat(dir)).mode & 0o777).toString(8)).toBe('700');
    // A sweep of its root leaves it: it is the host's now (before, one swept once its process was gone).
    const sweeper = new WorkspaceManager({ root: path.dirname(dir) });
    expect((await sweeper.sweep()).kept).toContain(dir);
    expect(await readFile(path.join(dir, 'out', 'report.txt'), 'utf8')).toBe('kept');
    // The host removes it when done; the next sweep takes away the mark beside it.
    await rm(dir, { recursive: true, force: true });
    expect((await sweeper.sweep()).kept).not.toContain(dir);
  });

  it('runs without a workspace when workspace: false', async () => {
    const backend = make({ workspace: false });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'context' });
    expectOk(result);
    expect((result.data as { hasWorkspace: boolean }).hasWorkspace).toBe(false);
    expect(result.meta.artifacts).toEqual([]);
    // Options are checked, never ignored: there is no workspace to keep.
    const keep = await backend.execute({ pluginId: BASIC, handlerId: 'context' }, { keepWorkspace: true });
    expectError(keep, 'VALIDATION_ERROR');
    expect(keep.error.details).toMatchObject({ issues: [{ path: 'keepWorkspace', message: expect.stringContaining('runs without workspaces (workspace: false): there is none to keep') }] });
  });
}

/** Release on every path, without following a symlink out. */
function releaseTests(suite: SuiteContext): void {
  const { make, capabilities } = suite;
  it('removes read-only trees and symlinks without following them out', async () => {
    const outside = await mkdtemp(path.join(os.tmpdir(), 'kb-outside-'));
    const precious = path.join(outside, 'precious.txt');
    await writeFile(precious, 'keep me');
    try {
      const backend = make();
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'read-only-tree', input: { target: outside } });
      if (capabilities.sandboxesFs) {
        // The sandbox refuses the symlink itself; the read-only tree is still cleaned up below.
        expectError(result, 'PERMISSION_DENIED');
        // Node 20/22 refuse the symlink itself; Node 24 refuses reading its target, outside the grant.
        expect(result.error.message).toMatch(new RegExp(`symlink|${path.basename(outside)}`, 'i'));
        const tree = await backend.execute({ pluginId: BASIC, handlerId: 'read-only-tree' });
        expectOk(tree);
        await expect(stat((tree.data as { dir: string }).dir)).rejects.toMatchObject({ code: 'ENOENT' });
      } else {
        expectOk(result);
        // The link is no artifact: a host reading its artifacts would read the file it leads to for the plugin.
        expect(result.meta.artifacts).toEqual(['a/b/locked.txt']);
        await expect(stat((result.data as { dir: string }).dir)).rejects.toMatchObject({ code: 'ENOENT' });
      }
      expect(await readFile(precious, 'utf8')).toBe('keep me');
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  it('releases the workspace on error and timeout paths', async () => {
    const backend = make();
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'throws' }), 'HANDLER_ERROR');
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 100 }), 'TIMEOUT');
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'validated', input: {} }), 'VALIDATION_ERROR');
    // afterEach checks the root is empty.
  });
}
