import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
const require = createRequire(import.meta.url);
let project: string;

/** `init greeter` in the project, as typed there; what it prints on its "Test it:" line ("Run it:" with `line`). */
function init(env: Record<string, string> = {}, line = 'Test it') {
  const result = spawnSync(process.execPath, [cli, 'init', 'greeter'], { cwd: project, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30_000 });
  expect(result.status, result.stderr).toBe(0);
  return new RegExp(`^${line}: +(.+)$`, 'm').exec(result.stdout)?.[1];
}

/** A package of this workspace installed in the project, as a package manager links it. */
async function install(pkg: string): Promise<void> {
  await mkdir(path.join(project, 'node_modules', '@kb-labs'), { recursive: true });
  await symlink(path.dirname(require.resolve(`${pkg}/package.json`)), path.join(project, 'node_modules', pkg), 'dir');
}

describe('kb-plugin-exec init: what the project installed', () => {
  beforeEach(async () => {
    project = await mkdtemp(path.join(os.tmpdir(), 'kb-init-project-'));
    await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'host', version: '0.0.0', private: true }));
  });
  afterEach(async () => {
    await rm(project, { recursive: true, force: true });
  });

  it("says to add the package with the project's own package manager (its lock file), npm's without one", async () => {
    expect(init()).toBe('cd greeter && npm install @kb-labs/plugin-execution && npm test');
    await rm(path.join(project, 'greeter'), { recursive: true });
    // Not installed: npx is told which package the command is of (before, a bare `npx kb-plugin-exec`
    // would have fetched whatever the registry has under that name).
    expect(init({}, 'Run it')).toBe(`npx --package @kb-labs/plugin-execution kb-plugin-exec run greeter hello --input '{"name":"Ada"}'`);
    await rm(path.join(project, 'greeter'), { recursive: true });
    // npx (npm's user agent) in a pnpm project: the project's lock file says which one it uses.
    await writeFile(path.join(project, 'pnpm-lock.yaml'), "lockfileVersion: '9.0'\n");
    expect(init({ npm_config_user_agent: 'npm/10.9.0 node/v20.19.0 linux x64 workspaces/false' })).toBe('cd greeter && pnpm add @kb-labs/plugin-execution && pnpm test');
    // Its test script too, as the project runs it (bun's own `bun test` is its test runner, not the script).
    await rm(path.join(project, 'greeter'), { recursive: true });
    await rm(path.join(project, 'pnpm-lock.yaml'));
    await writeFile(path.join(project, 'bun.lock'), '{}\n');
    expect(init()).toBe('cd greeter && bun add @kb-labs/plugin-execution && bun run test');
  });

  it('makes the plugin id from the folder name, accents dropped but not their letters', async () => {
    const result = spawnSync(process.execPath, [cli, 'init', 'Über Plugin.v2'], { cwd: project, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(result.status, result.stderr).toBe(0);
    // Before: @my-org/ber-plugin.v2.
    expect(result.stdout).toMatch(/^Created plugin @my-org\/uber-plugin\.v2 in /);
    expect(JSON.parse(await readFile(path.join(project, 'Über Plugin.v2', 'kb.plugin.json'), 'utf8')).id).toBe('@my-org/uber-plugin.v2');
  });

  it('makes an id the manifest takes from a folder name too long for one (up to 255 bytes), and a plugin that runs as created', async () => {
    const folder = `${'long-name.'.repeat(24)}x`;
    const result = spawnSync(process.execPath, [cli, 'init', folder], { cwd: project, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(result.status, result.stderr).toBe(0);
    const { id } = JSON.parse(await readFile(path.join(project, folder, 'kb.plugin.json'), 'utf8')) as { id: string };
    const { name } = JSON.parse(await readFile(path.join(project, folder, 'package.json'), 'utf8')) as { name: string };
    // At most 214 characters (the manifest's and npm's limit), ending on a letter or digit as a shorter one does.
    expect(id).toBe(`@my-org/${folder.slice(0, 206).replace(/[^a-z0-9]+$/, '')}`);
    expect(name).toBe(id.slice('@my-org/'.length));
    // Before: "VALIDATION_ERROR: … id: must be at most 214 characters" from the command init printed.
    const run = spawnSync(process.execPath, [cli, 'run', folder, 'hello', '--input', '{"name":"Ada"}', '--no-workspace'], { cwd: project, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual(expect.anything());
  });

  it('with only core (and a backend) installed: no install step, and a test that imports core, runs on the backend there and skips the others', async () => {
    await install('@kb-labs/plugin-execution-core');
    await install('@kb-labs/plugin-execution-in-process');
    expect(init()).toBe('cd greeter && npm test');
    // Core has no command: npx is told the umbrella's, not left to fetch one named kb-plugin-exec.
    await rm(path.join(project, 'greeter'), { recursive: true });
    expect(init({}, 'Run it')).toBe(`npx --package @kb-labs/plugin-execution kb-plugin-exec run greeter hello --input '{"name":"Ada"}'`);
    const dir = path.join(project, 'greeter');
    expect(await readFile(path.join(dir, 'hello.test.mjs'), 'utf8')).toContain("import { createExecutionBackend } from '@kb-labs/plugin-execution-core';");
    const own = spawnSync(process.execPath, ['--test', '--test-reporter=tap'], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 60_000 });
    expect(own.status, own.stdout + own.stderr).toBe(0);
    expect(own.stdout).toMatch(/^# pass 1$/m);
    expect(own.stdout).toMatch(/^ok \d+ - hello on the worker-pool backend # SKIP The "worker-pool" backend needs the package @kb-labs\/plugin-execution-worker-pool, which is not installed/m);
  });

  it('leaves nothing half-written when a file cannot be written (a file size limit: EFBIG): the folders it made go too, and init runs there again', () => {
    // sh's `ulimit -f` counts 512-byte blocks: hello.test.mjs (over 800 bytes) is cut short and refused, after the three files before it.
    const limited = spawnSync('sh', ['-c', 'ulimit -f 1 && exec "$0" "$@"', process.execPath, cli, 'init', 'plugins/greeter'], { cwd: project, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(limited.status, limited.stderr).toBe(1);
    expect(limited.stderr).toMatch(/^ERROR: init: cannot write hello\.test\.mjs in \S+greeter \(EFBIG: [^\n]*\): what it wrote there is removed\n$/);
    // Before: package.json, kb.plugin.json, hello.mjs and 512 bytes of hello.test.mjs were left, and init there again was refused ("exists and is not empty").
    expect(existsSync(path.join(project, 'plugins'))).toBe(false);
    const again = spawnSync(process.execPath, [cli, 'init', 'plugins/greeter'], { cwd: project, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(again.status, again.stderr).toBe(0);
  });

  it('prints commands that run as printed for a folder whose name starts with a dash (not taken for an option)', () => {
    const result = spawnSync(process.execPath, [cli, 'init', '--', '-greeter'], { cwd: project, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(result.status, result.stderr).toBe(0);
    const runIt = /^Run it: +npx --package @kb-labs\/plugin-execution kb-plugin-exec (.+)$/m.exec(result.stdout)?.[1];
    // Before: `run -greeter hello`, "unknown option -g"; and `cd -greeter`, an option of cd.
    expect(runIt).toBe(`run ./-greeter hello --input '{"name":"Ada"}'`);
    expect(/^Test it: +(.+)$/m.exec(result.stdout)?.[1]).toBe('cd ./-greeter && npm install @kb-labs/plugin-execution && npm test');
    const ran = spawnSync('sh', ['-c', `"$0" "$1" ${runIt}`, process.execPath, cli], { cwd: project, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(ran.status, ran.stderr).toBe(0);
    expect(JSON.parse(ran.stdout)).toEqual({ message: 'Hello, Ada!' });
  });
});
