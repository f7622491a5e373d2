/**
 * A host that installs core and this backend, without the umbrella package: core's own
 * `createExecutionBackend` finds the backend in the host's project, and names the package of a
 * backend that is not installed. The projects are real directories with a node_modules of links to
 * this workspace's built packages (pnpm's kind of layout: core itself cannot see the backend).
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const packages = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PLUGIN_MANIFEST = { id: '@demo/greeter', version: '1.0.0', handlers: { hello: { entry: './hello.mjs' } } };
const HANDLER = 'export default async (input) => ({ message: `Hello, ${input.name}` });\n';

const HOST_ESM = `
import { createExecutionBackend, BackendNotInstalledError } from '@kb-labs/plugin-execution-core';
const plugins = [new URL('./greeter/', import.meta.url).pathname];
const backend = createExecutionBackend({ plugins, workspace: false });
const ran = await backend.execute({ pluginId: '@demo/greeter', handlerId: 'hello', input: { name: 'Ada' } });
const other = createExecutionBackend({ type: 'worker-pool', plugins });
const missing = await other.execute({ pluginId: '@demo/greeter', handlerId: 'hello', input: {} });
const health = await other.health();
await backend.shutdown();
await other.shutdown();
console.log(JSON.stringify({ data: ran.data, code: missing.error?.code, reason: missing.error?.details?.reason, message: missing.error?.message, own: missing.error instanceof BackendNotInstalledError, health: health.ok }));
`;

const HOST_CJS = `
const path = require('node:path');
const { createExecutionBackend, BackendNotInstalledError } = require('@kb-labs/plugin-execution-core');
(async () => {
  const plugins = [path.join(__dirname, 'greeter')];
  const backend = createExecutionBackend({ plugins, workspace: false });
  const ran = await backend.execute({ pluginId: '@demo/greeter', handlerId: 'hello', input: { name: 'Ada' } });
  const missing = await createExecutionBackend({ type: 'subprocess', plugins }).execute({ pluginId: '@demo/greeter', handlerId: 'hello', input: {} });
  await backend.shutdown();
  console.log(JSON.stringify({ data: ran.data, code: missing.error?.code, reason: missing.error?.details?.reason, message: missing.error?.message, own: missing.error instanceof BackendNotInstalledError }));
})();
`;

let project: string;

beforeAll(async () => {
  project = await mkdtemp(path.join(os.tmpdir(), 'kb-core-only-'));
  const scope = path.join(project, 'node_modules', '@kb-labs');
  await mkdir(scope, { recursive: true });
  for (const name of ['core', 'in-process']) await symlink(path.join(packages, name), path.join(scope, `plugin-execution-${name}`), 'dir');
  await mkdir(path.join(project, 'greeter'));
  await writeFile(path.join(project, 'greeter', 'kb.plugin.json'), JSON.stringify(PLUGIN_MANIFEST));
  await writeFile(path.join(project, 'greeter', 'package.json'), '{ "type": "module" }\n');
  await writeFile(path.join(project, 'greeter', 'hello.mjs'), HANDLER);
  await writeFile(path.join(project, 'host.mjs'), HOST_ESM);
  await writeFile(path.join(project, 'host.cjs'), HOST_CJS);
});

afterAll(async () => {
  await rm(project, { recursive: true, force: true });
});

function runHost(file: string, cwd: string, userAgent?: string): Record<string, unknown> {
  const env = { PATH: process.env.PATH ?? '', HOME: os.tmpdir(), ...(userAgent ? { npm_config_user_agent: userAgent } : {}) };
  const result = spawnSync(process.execPath, [path.join(project, file)], { cwd, env, encoding: 'utf8', timeout: 60_000 });
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

describe("core's createExecutionBackend, core and one backend installed", () => {
  it('runs on the installed backend and gives BACKEND_NOT_INSTALLED with the npm command for another (ES module host)', () => {
    // Run from elsewhere: the backend is found from the running script's project.
    const out = runHost('host.mjs', os.tmpdir());
    expect(out).toMatchObject({ data: { message: 'Hello, Ada' }, code: 'BACKEND_NOT_INSTALLED', reason: 'not-installed', own: true, health: false });
    expect(out.message).toContain('Add it: npm install @kb-labs/plugin-execution-worker-pool');
  });

  it('does the same for a CommonJS host, with errors of its own classes', () => {
    const out = runHost('host.cjs', project);
    expect(out).toMatchObject({ data: { message: 'Hello, Ada' }, code: 'BACKEND_NOT_INSTALLED', reason: 'not-installed', own: true });
    expect(out.message).toContain('npm install @kb-labs/plugin-execution-subprocess');
  });

  it("names the command of the package manager whose lock file the host's project has, when the host is run by node itself", async () => {
    await writeFile(path.join(project, 'pnpm-lock.yaml'), "lockfileVersion: '9.0'\n");
    try {
      const out = runHost('host.mjs', os.tmpdir());
      expect(out.message).toContain('Add it: pnpm add @kb-labs/plugin-execution-worker-pool');
    } finally {
      await rm(path.join(project, 'pnpm-lock.yaml'));
    }
  });

  it("names the command of the package manager that runs the host", () => {
    const out = runHost('host.mjs', project, 'pnpm/10.34.8 npm/? node/v20.20.2 linux x64');
    expect(out.message).toContain('Add it: pnpm add @kb-labs/plugin-execution-worker-pool');
  });
});
