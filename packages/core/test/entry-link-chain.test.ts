import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RunnerSession, type RunnerResult, type RunnerTask } from '../src/backend-kit.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let base: string;

beforeAll(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'kb-entry-link-chain-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('an entry that is a link to a link leading out of the plugin folder, whose real path cannot be read', () => {
  it('is refused (VALIDATION_ERROR) naming where the chain leads, not said to be missing', async () => {
    // A target that is not there to read (as in a sandbox that shows a child only the plugin's
    // folder): realpath fails, and each link on the way is followed instead.
    const pluginRoot = path.join(base, 'plugin');
    await mkdir(pluginRoot);
    const outside = path.join(base, 'gone', 'handler.mjs');
    await symlink(outside, path.join(pluginRoot, 'inner.mjs'));
    await symlink('inner.mjs', path.join(pluginRoot, 'entry.mjs'));
    const task: RunnerTask = {
      executionId: 'exec-chain', pluginId: '@t/chain', handlerId: 'run', pluginRoot, entryPath: path.join(pluginRoot, 'entry.mjs'), exportName: 'default',
      input: undefined, context: {}, workspaceDir: undefined, permissions: {}, timeoutMs: 10_000, memoryMb: undefined,
    };
    const result = (await new RunnerSession(task, () => undefined).run()) as RunnerResult & { ok: false; error: { code: unknown; message: unknown } };
    expect(result).toMatchObject({
      ok: false,
      error: { code: 'VALIDATION_ERROR', message: `Handler "run" of plugin "@t/chain": ./entry.mjs is a link to ${outside}, outside the plugin folder; copy the file into the folder` },
    });
  });
});
