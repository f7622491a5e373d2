import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
let root: string;

function run(args: string[], cwd?: string) {
  const result = spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** What `run`'s flags do to the execution, beyond being accepted: each looked at from the handler's side. */
describe('kb-plugin-exec run: what its flags change', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-flags-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('--no-workspace runs the handler without a workspace (ctx.workspace undefined); without it the handler has one, removed after', async () => {
    const none = run(['run', fixturePlugins.basic, 'context', '--no-workspace']);
    expect(none.status, none.stderr).toBe(0);
    // Before (the flag read as "the default"): a workspace made all the same.
    expect(JSON.parse(none.stdout)).toMatchObject({ hasWorkspace: false });
    const workspaces = await mkdtemp(path.join(root, 'ws-'));
    const made = run(['run', fixturePlugins.basic, 'context', '--workspace-root', workspaces]);
    expect(made.status, made.stderr).toBe(0);
    expect(JSON.parse(made.stdout)).toMatchObject({ hasWorkspace: true });
    expect(await readdir(workspaces)).toEqual([]);
  });
});
