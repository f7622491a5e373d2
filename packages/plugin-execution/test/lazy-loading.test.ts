import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkgRoot = path.resolve(here, '..');
const packages = path.resolve(pkgRoot, '..');
const env = { PATH: process.env.PATH ?? '', HOME: os.tmpdir() };
// Installed layout (node_modules/@kb-labs/plugin-execution-x) or this workspace's real paths (packages/x).
const backendModule = (name: string) => new RegExp(`plugin-execution-${name}/|/packages/${name}/`);
const HEAVY = [backendModule('in-process'), backendModule('worker-pool'), backendModule('subprocess'), backendModule('queue'), /\/piscina\//, /\/cross-spawn\//, /\/@nats-io\//];

function runNode(args: string[], cwd = pkgRoot) {
  const result = spawnSync(process.execPath, args, { cwd, env, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('lazy backend loading', () => {
  it('importing the umbrella (ESM) resolves no backend module, piscina or cross-spawn', () => {
    const hooks = path.join(here, 'fixtures', 'register-resolve-logger.mjs');
    const { status, stderr } = runNode(['--import', hooks, '--input-type=module', '-e', "const m = await import('@kb-labs/plugin-execution'); if (typeof m.createExecutionBackend !== 'function') process.exit(3); m.createExecutionBackend({ type: 'worker-pool' });"]);
    expect(status).toBe(0);
    const resolved = stderr.split('\n').filter((l) => l.startsWith('RESOLVED '));
    expect(resolved.some((l) => l.includes('plugin-execution/dist/index.js'))).toBe(true);
    for (const pattern of HEAVY) expect(resolved.filter((l) => pattern.test(l))).toEqual([]);
  });

  it('first use of a type loads that backend only', () => {
    const hooks = path.join(here, 'fixtures', 'register-resolve-logger.mjs');
    const script = `
      const { createExecutionBackend } = await import('@kb-labs/plugin-execution');
      const backend = createExecutionBackend({ type: 'in-process', workspace: false });
      const health = await backend.health();
      await backend.shutdown();
      if (!health.ok) process.exit(4);`;
    const { status, stderr } = runNode(['--import', hooks, '--input-type=module', '-e', script]);
    expect(status, stderr).toBe(0);
    const resolved = stderr.split('\n').filter((l) => l.startsWith('RESOLVED '));
    expect(resolved.some((l) => backendModule('in-process').test(l))).toBe(true);
    for (const pattern of HEAVY.slice(1)) expect(resolved.filter((l) => pattern.test(l))).toEqual([]);
  });

  it('requiring the umbrella (CJS) loads no backend module either', () => {
    const script = `
      const m = require('@kb-labs/plugin-execution');
      m.createExecutionBackend({ type: 'subprocess' });
      const loaded = Object.keys(require.cache).filter((k) => /plugin-execution-(in-process|worker-pool|subprocess|queue)|packages[\\\\/](in-process|worker-pool|subprocess|queue)[\\\\/]|[\\\\/](piscina|cross-spawn|@nats-io)[\\\\/]/.test(k));
      if (!Object.keys(require.cache).some((k) => k.includes('plugin-execution'))) process.exit(5);
      process.stdout.write(JSON.stringify(loaded));`;
    const { status, stdout, stderr } = runNode(['-e', script]);
    expect(status, stderr).toBe(0);
    expect(JSON.parse(stdout)).toEqual([]);
  });

  it('a CommonJS host gets errors that are instances of its own classes', async () => {
    const script = `
      const m = require('@kb-labs/plugin-execution');
      const backend = m.createExecutionBackend({ type: 'in-process', workspace: false });
      backend.execute({ pluginId: '@nobody/x', handlerId: 'y' }).then(async (r) => {
        await backend.shutdown();
        process.stdout.write(JSON.stringify({ code: r.error.code, instance: r.error instanceof m.HandlerNotFoundError, base: r.error instanceof m.ExecutionError }));
      });`;
    const { status, stdout, stderr } = runNode(['-e', script]);
    expect(status, stderr).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ code: 'HANDLER_NOT_FOUND', instance: true, base: true });
  });
});

describe('backend package not installed', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  // A real install layout with the umbrella, core and in-process, but no worker-pool or queue package.
  async function installWithoutBackends(): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-not-installed-'));
    dirs.push(dir);
    const scope = path.join(dir, 'node_modules', '@kb-labs');
    await mkdir(scope, { recursive: true });
    await mkdir(path.join(scope, 'plugin-execution'));
    await cp(path.join(pkgRoot, 'dist'), path.join(scope, 'plugin-execution', 'dist'), { recursive: true });
    await cp(path.join(pkgRoot, 'package.json'), path.join(scope, 'plugin-execution', 'package.json'));
    const requireFromUmbrella = createRequire(path.join(pkgRoot, 'package.json'));
    for (const name of ['plugin-execution-core', 'plugin-execution-in-process', 'plugin-execution-channels']) {
      const real = path.dirname(requireFromUmbrella.resolve(`@kb-labs/${name}/package.json`));
      await symlink(real, path.join(scope, name), 'dir');
    }
    return dir;
  }

  it('resolves BACKEND_NOT_INSTALLED naming the package, for ESM and CJS hosts', async () => {
    const dir = await installWithoutBackends();
    const esm = `
      import { createExecutionBackend, BackendNotInstalledError } from '@kb-labs/plugin-execution';
      const backend = createExecutionBackend({ type: 'worker-pool' });
      const r = await backend.execute({ pluginId: '@a/b', handlerId: 'run' });
      const h = await backend.health();
      await backend.shutdown();
      console.log(JSON.stringify({ ok: r.ok, code: r.error.code, message: r.error.message, instance: r.error instanceof BackendNotInstalledError, health: h.ok }));`;
    await writeFile(path.join(dir, 'esm.mjs'), esm);
    const cjs = `
      const { createExecutionBackend, BackendNotInstalledError } = require('@kb-labs/plugin-execution');
      const backend = createExecutionBackend({ type: 'worker-pool' });
      backend.execute({ pluginId: '@a/b', handlerId: 'run' }).then((r) => console.log(JSON.stringify({ ok: r.ok, code: r.error.code, message: r.error.message, instance: r.error instanceof BackendNotInstalledError })));`;
    await writeFile(path.join(dir, 'cjs.cjs'), cjs);
    for (const file of ['esm.mjs', 'cjs.cjs']) {
      const { status, stdout, stderr } = runNode([path.join(dir, file)], dir);
      expect(status, stderr).toBe(0);
      const out = JSON.parse(stdout);
      expect(out).toMatchObject({ ok: false, code: 'BACKEND_NOT_INSTALLED', instance: true });
      // The install command of the package manager in use: npm's when none says otherwise.
      expect(out.message).toContain('Add it: npm install @kb-labs/plugin-execution-worker-pool');
      if (file === 'esm.mjs') expect(out.health).toBe(false);
    }
    // Run by pnpm (or yarn, or bun), which says so in npm_config_user_agent: its command.
    for (const [agent, command] of [['pnpm/10.34.8 npm/? node/v20.20.2 linux x64', 'pnpm add'], ['yarn/4.5.0 npm/? node/v20.20.2 linux x64', 'yarn add']]) {
      const result = spawnSync(process.execPath, [path.join(dir, 'esm.mjs')], { cwd: dir, env: { ...env, npm_config_user_agent: agent }, encoding: 'utf8', timeout: 30_000 });
      expect(JSON.parse(result.stdout).message).toContain(`Add it: ${command} @kb-labs/plugin-execution-worker-pool`);
    }
  });

  it('startExecutionWorker rejects with BACKEND_NOT_INSTALLED naming the queue package when it is missing', async () => {
    const dir = await installWithoutBackends();
    const esm = `
      import { startExecutionWorker, BackendNotInstalledError } from '@kb-labs/plugin-execution';
      const error = await startExecutionWorker({ connection: { servers: 'nats://127.0.0.1:1' }, plugins: [] }).then(() => undefined, (e) => e);
      console.log(JSON.stringify({ code: error?.code, message: error?.message, instance: error instanceof BackendNotInstalledError }));`;
    await writeFile(path.join(dir, 'worker.mjs'), esm);
    const { status, stdout, stderr } = runNode([path.join(dir, 'worker.mjs')], dir);
    expect(status, stderr).toBe(0);
    const out = JSON.parse(stdout);
    expect(out).toMatchObject({ code: 'BACKEND_NOT_INSTALLED', instance: true });
    expect(out.message).toContain('Add it: npm install @kb-labs/plugin-execution-queue');
  });

  it('startExecutionWorker with a queue package of another version, which exports no startExecutionWorker, rejects with BACKEND_NOT_INSTALLED load-failed naming it', async () => {
    const dir = await installWithoutBackends();
    const queue = path.join(dir, 'node_modules', '@kb-labs', 'plugin-execution-queue');
    await mkdir(queue);
    await writeFile(path.join(queue, 'package.json'), JSON.stringify({ name: '@kb-labs/plugin-execution-queue', version: '0.0.1', type: 'module', exports: { '.': './index.js' } }));
    await writeFile(path.join(queue, 'index.js'), 'export class QueueBackend {}\nexport function startWorker() {}\n');
    const esm = `
      import { startExecutionWorker, BackendNotInstalledError } from '@kb-labs/plugin-execution';
      const error = await startExecutionWorker({ connection: { servers: 'nats://127.0.0.1:1' }, plugins: [] }).then(() => undefined, (e) => e);
      console.log(JSON.stringify({ name: error?.name, code: error?.code, details: error?.details, message: error?.message, instance: error instanceof BackendNotInstalledError }));`;
    await writeFile(path.join(dir, 'worker.mjs'), esm);
    const { status, stdout, stderr } = runNode([path.join(dir, 'worker.mjs')], dir);
    expect(status, stderr).toBe(0);
    // Before: a TypeError, "startExecutionWorker is not a function".
    const out = JSON.parse(stdout);
    expect(out).toMatchObject({ code: 'BACKEND_NOT_INSTALLED', details: { type: 'queue', package: '@kb-labs/plugin-execution-queue', reason: 'load-failed' }, instance: true });
    expect(out.message).toContain('does not export startExecutionWorker');
  });
});
