import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
let root: string;

function run(args: string[]) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('kb-plugin-exec CLI', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('runs a handler and prints the result as JSON', () => {
    const { status, stdout } = run(['run', fixturePlugins.basic, 'echo', '--input', '{"args":["--verbose"]}', '--workspace-root', root]);
    expect(status).toBe(0);
    const result = JSON.parse(stdout);
    expect(result).toMatchObject({ ok: true, data: { args: ['--verbose'] }, meta: { backend: 'in-process', handlerId: 'echo' } });
  });

  it('reads input from @file and passes the CLI context', async () => {
    const file = path.join(root, 'input.json');
    await writeFile(file, JSON.stringify({ from: 'file' }));
    const echo = run(['run', fixturePlugins.basic, 'echo', '--input', `@${file}`, '--workspace-root', root]);
    expect(JSON.parse(echo.stdout).data).toEqual({ from: 'file' });
    const ctx = run(['run', fixturePlugins.basic, 'context', '--workspace-root', root]);
    expect(JSON.parse(ctx.stdout).data.context.host.kind).toBe('cli');
  });

  it('exits non-zero with the error code on failure', () => {
    const missing = run(['run', fixturePlugins.basic, 'nope', '--workspace-root', root]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^HANDLER_NOT_FOUND: /);
    expect(JSON.parse(missing.stdout)).toMatchObject({ ok: false, error: { code: 'HANDLER_NOT_FOUND' } });
    const timeout = run(['run', fixturePlugins.basic, 'never-resolves', '--timeout', '100', '--workspace-root', root]);
    expect(timeout.status).toBe(1);
    expect(timeout.stderr).toMatch(/^TIMEOUT: /);
    const denied = run(['run', fixturePlugins.guarded, 'needs-kv', '--workspace-root', root]);
    expect(denied.stderr).toMatch(/^PERMISSION_DENIED: /);
  });

  it('grants permissions with --grant', () => {
    const result = run(['run', fixturePlugins.basic, 'platform-call', '--grant', '{"platform":{"kv":true}}', '--input', '{"method":"get"}', '--workspace-root', root]);
    expect(result.status).toBe(0);
    // No platform services are wired into the CLI: the call is allowed but the host has no such method.
    expect(JSON.parse(result.stdout).data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR' });
  });

  it('usage errors exit 2 with help', () => {
    const bad = run(['run', fixturePlugins.basic]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('Usage:');
    const badJson = run(['run', fixturePlugins.basic, 'echo', '--input', '{nope']);
    expect(badJson.status).toBe(2);
    expect(badJson.stderr).toContain('--input is not valid JSON');
    const badPlugin = run(['run', root, 'echo']);
    expect(badPlugin.status).toBe(1);
    expect(badPlugin.stderr).toMatch(/^VALIDATION_ERROR: No kb.plugin.json/);
  });

  it('leaves no workspace behind', async () => {
    expect(await readdir(root).then((names) => names.filter((n) => n.startsWith('kbx-')))).toEqual([]);
  });
});
