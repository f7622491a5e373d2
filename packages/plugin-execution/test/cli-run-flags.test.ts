import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
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

  it('--platform takes the services from a default export too: an object, or a function (sync or async) that returns one', async () => {
    const modules: Array<[string, string, string]> = [
      ['platform-default.mjs', 'export default { kv: { async get(key) { return `default ${key}`; } } };\n', 'default k'],
      ['platform-default-factory.mjs', 'export default () => ({ kv: { async get(key) { return `default factory ${key}`; } } });\n', 'default factory k'],
      ['platform-async-factory.mjs', 'export const platform = async () => ({ kv: { async get(key) { return `async factory ${key}`; } } });\n', 'async factory k'],
    ];
    for (const [file, text, value] of modules) {
      const services = path.join(root, file);
      await writeFile(services, text);
      const result = run(['run', fixturePlugins.basic, 'platform-call', '--platform', services, '--grant', '{"platform":{"kv":true}}', '--input', '{"method":"get","args":["k"]}', '--no-workspace']);
      expect(result.status, `${file}: ${result.stderr}`).toBe(0);
      expect(JSON.parse(result.stdout), file).toEqual({ ok: true, value });
    }
  });

  it('--platform takes a package name, resolved from the working directory', async () => {
    const project = await mkdtemp(path.join(root, 'project-'));
    const pkg = path.join(project, 'node_modules', 'host-services');
    await mkdir(pkg, { recursive: true });
    await writeFile(path.join(pkg, 'package.json'), JSON.stringify({ name: 'host-services', version: '1.0.0', type: 'module', exports: './index.js' }));
    await writeFile(path.join(pkg, 'index.js'), 'export const platform = { kv: { async get(key) { return `package ${key}`; } } };\n');
    const result = run(['run', fixturePlugins.basic, 'platform-call', '--platform', 'host-services', '--grant', '{"platform":{"kv":true}}', '--input', '{"method":"get","args":["k"]}', '--no-workspace'], project);
    // Before (only a file taken): "--platform: no file or package "host-services"", exit 2.
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ ok: true, value: 'package k' });
  });

  it('a --platform module whose `platform` is no object says what it is, never "rename `platform` to `platform`"', async () => {
    const modules: Array<[string, string, string]> = [
      ['platform-number.mjs', 'export const platform = 5;\n', 'it exports a number'],
      ['platform-no-return.mjs', 'export function platform() {\n  ({ kv: {} });\n}\n', 'the function it exports returned undefined'],
      ['platform-unset.mjs', 'export let platform;\n', 'it exports undefined'],
    ];
    for (const [file, text, said] of modules) {
      const services = path.join(root, file);
      await writeFile(services, text);
      const result = run(['run', fixturePlugins.basic, 'platform-call', '--platform', services, '--no-workspace']);
      expect(result.status, file).toBe(2);
      // Before: "… (it exports `platform`; rename `platform` to `platform`)".
      expect(result.stderr.split('\n')[0], file).toBe(`--platform: ${services} must export \`platform\` (or a default export): an object of services, or a function that returns one (${said})`);
    }
  });
});
