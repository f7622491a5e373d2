import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { ValidationError } from '@kb-labs/plugin-execution-core';
import { WorkerPoolBackend } from '@kb-labs/plugin-execution-worker-pool';
import { describe, expect, it } from 'vitest';
import { runners } from './helpers.js';

describe('worker-pool: options', () => {
  it.each([
    [{ maxThreads: 0 }, 'maxThreads'],
    [{ maxThreads: 2, minThreads: 3 }, 'minThreads'],
    [{ maxThreads: 2, maxConcurrency: 4 }, 'maxConcurrency'],
    [{ idleTimeoutMs: -1 }, 'idleTimeoutMs'],
    [{ cancelGraceMs: 1.5 }, 'cancelGraceMs'],
    [{ maxExecutionsPerThread: 'often' }, 'maxExecutionsPerThread'],
    [{ resourceLimits: { heap: 10 } }, 'resourceLimits.heap'],
    [{ resourceLimits: { maxOldGenerationSizeMb: -5 } }, 'resourceLimits.maxOldGenerationSizeMb'],
    // Under ~6 MB of heap every thread runs out of memory while Node starts it (WORKER_CRASHED, start-failed, each time).
    [{ resourceLimits: { maxOldGenerationSizeMb: 4 } }, 'resourceLimits.maxOldGenerationSizeMb: must be a number of MB from 8'],
    // Under ~0.25 MB the thread overflows its stack while Node starts it, and the host process dies.
    [{ resourceLimits: { stackSizeMb: 0.1 } }, 'resourceLimits.stackSizeMb: must be a number of MB from 1 to 1024'],
    [{ resourceLimits: { stackSizeMb: 100_000 } }, 'resourceLimits.stackSizeMb: must be a number of MB from 1 to 1024'],
    // V8 reserves the code range up front: one larger than the address space ends the host process
    // (a fatal OOM) when the first thread starts. No thread starts here, so the head's miss shows as no error.
    [{ minThreads: 0, resourceLimits: { codeRangeSizeMb: 1e9 } }, 'resourceLimits.codeRangeSizeMb: must be a number of MB above 0, up to 1024'],
    [{ env: { A: 1 } }, 'env.A'],
    [{ execArgv: '--inspect' }, 'execArgv'],
    [{ maxThreds: 2 }, 'maxThreds: unknown option; did you mean "maxThreads"?'],
    // The execution time limit, not the idle threads' (whose name holds "timeout" too).
    [{ timeout: 5000 }, 'timeout: unknown option; did you mean "defaultTimeoutMs"?'],
    [{ timeoutMs: 5000 }, 'timeoutMs: not an option of the backend; it is an option of execute(), for one execution: backend.execute(request, { timeoutMs }); or did you mean "defaultTimeoutMs"?'],
    [{ abortGraceMs: 100 }, 'abortGraceMs: was renamed: use cancelGraceMs'],
  ])('rejects %j naming %s', (options, path) => {
    let thrown: unknown;
    try {
      new WorkerPoolBackend(options as never);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ValidationError);
    expect((thrown as Error).message).toContain(path);
  });

  it('refuses the removed spinWaitUs, saying why', () => {
    expect(() => new WorkerPoolBackend({ spinWaitUs: 0 } as never)).toThrow(/spinWaitUs: was removed: idle threads no longer busy-wait/);
  });

  it('rejects Node flags a worker thread cannot take, as a ValidationError naming execArgv', () => {
    expect(() => new WorkerPoolBackend({ execArgv: ['--no-such-flag'] })).toThrow(ValidationError);
    expect(() => new WorkerPoolBackend({ execArgv: ['--no-such-flag'] })).toThrow(
      expect.objectContaining({ details: expect.objectContaining({ path: 'execArgv' }), message: expect.stringContaining('execArgv: no worker thread can be started') }),
    );
  });

  it('defaults: one thread per core, one started up front, concurrency = threads', async () => {
    const backend = new WorkerPoolBackend();
    try {
      const stats = await backend.stats();
      expect(stats.concurrency).toBe(os.availableParallelism());
      expect(await runners(backend)).toMatchObject({ maxThreads: os.availableParallelism(), minThreads: 1 });
      expect(stats.maxQueue).toBe(1000);
    } finally {
      await backend.shutdown();
    }
  });

  it('takes maxConcurrency as the thread count when maxThreads is not set', async () => {
    const backend = new WorkerPoolBackend({ maxConcurrency: 3 });
    try {
      expect(await runners(backend)).toMatchObject({ maxThreads: 3 });
      expect((await backend.stats()).concurrency).toBe(3);
    } finally {
      await backend.shutdown();
    }
  });
});

describe('worker-pool: a backend whose options it refuses', () => {
  it('is not counted as open: twenty refused in a row do not warn of backends never shut down (KB_PLUGIN_MANY_BACKENDS), and nothing keeps the process up', () => {
    const entry = new URL('../dist/index.js', import.meta.url).href;
    const script = `import { WorkerPoolBackend } from ${JSON.stringify(entry)};
const warnings = [];
process.on('warning', (w) => { if (w.code === 'KB_PLUGIN_MANY_BACKENDS') warnings.push(w.message); });
let refused = 0;
for (let i = 0; i < 25; i++) try { new WorkerPoolBackend({ minThreads: 3, maxThreads: 1 }); } catch (e) { if (e.code === 'VALIDATION_ERROR') refused++; }
await new Promise((resolve) => setImmediate(resolve));
console.log(JSON.stringify({ refused, warnings }));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(run.signal).toBe(null);
    expect(JSON.parse(run.stdout.trim())).toEqual({ refused: 25, warnings: [] });
  });
});

describe('worker-pool: a host under Node\'s permission model', () => {
  it('without --allow-worker: the backend says so and names the flag, not that its options are invalid; with no thread to start yet, health() says it', () => {
    const flag = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
    const entry = new URL('../dist/index.js', import.meta.url).href;
    const script = `import { WorkerPoolBackend } from ${JSON.stringify(entry)};
try { new WorkerPoolBackend({ minThreads: 1 }); console.log('started'); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }
// minThreads 0: nothing starts until the first execution; health() says it first.
const lazy = new WorkerPoolBackend({ minThreads: 0 });
console.log(JSON.stringify({ code: 'health', message: (await lazy.health()).problems.join(' | ') }));
await lazy.shutdown();`;
    const run = spawnSync(process.execPath, [flag, '--allow-fs-read=*', '--allow-fs-write=*', '--no-warnings', '--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    const [said, health] = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as { code: string; message: string });
    const refusal = `the host process runs under Node's permission model (${flag}) without --allow-worker, so it cannot start worker threads: start it with --allow-worker as well`;
    expect(said).toEqual({ code: 'VALIDATION_ERROR', message: `The worker-pool backend cannot run here: ${refusal}` });
    expect(health).toEqual({ code: 'health', message: refusal });
  });

  it('with --allow-worker but no read access to the thread\'s entry file: the thread fails to start on that, not on a missing --allow-worker', () => {
    const flag = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
    const packageDir = fileURLToPath(new URL('..', import.meta.url));
    const rootDir = path.resolve(packageDir, '../..');
    // What the host itself reads (the backend's main entry, core, the dependencies, the plugin), but not dist/worker-entry.*.
    const readable = [path.join(packageDir, 'dist/index.js'), path.join(packageDir, 'package.json'), path.join(packageDir, 'node_modules'), path.join(rootDir, 'packages/core'), path.join(rootDir, 'node_modules'), fixturePlugins.basic];
    const entry = new URL('../dist/index.js', import.meta.url).href;
    const script = `import { WorkerPoolBackend } from ${JSON.stringify(entry)};
const backend = new WorkerPoolBackend({ minThreads: 0, plugins: [${JSON.stringify(fixturePlugins.basic)}], workspace: false });
const result = await backend.execute({ pluginId: '@conformance/basic', handlerId: 'echo', input: 1 });
await backend.shutdown();
console.log(JSON.stringify({ ok: result.ok, error: result.ok ? undefined : { code: result.error.code, reason: result.error.details.reason, message: result.error.message, permission: result.error.cause?.permission } }));`;
    const grants = readable.map((where) => `--allow-fs-read=${where}`);
    const run = spawnSync(process.execPath, [flag, '--allow-worker', ...grants, '--no-warnings', '--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(run.stderr).toBe('');
    const said = JSON.parse(run.stdout.trim()) as { ok: boolean; error: { code: string; reason: string; message: string; permission: string } };
    // Before, had the permission's kind not been checked: "… runs under Node's permission model without --allow-worker …", a flag it has.
    expect(said).toMatchObject({ ok: false, error: { code: 'WORKER_CRASHED', reason: 'start-failed', permission: 'FileSystemRead' } });
    expect(said.error.message).not.toMatch(/allow-worker/);
  });
});


describe('worker-pool: a host whose working directory was removed', () => {
  it('says so, not only ENOENT uv_cwd, and runs again once the host changes to a folder that exists', () => {
    const entry = new URL('../dist/index.js', import.meta.url).href;
    const script = `import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
const { WorkerPoolBackend } = await import(${JSON.stringify(entry)});
const gone = fs.mkdtempSync(path.join(os.tmpdir(), 'kb-wp-cwd-'));
process.chdir(gone);
fs.rmdirSync(gone);
const backend = new WorkerPoolBackend({ minThreads: 0, plugins: [${JSON.stringify(fixturePlugins.basic)}], workspace: false });
const request = { pluginId: '@conformance/basic', handlerId: 'echo', input: 1 };
const first = await backend.execute(request);
process.chdir(os.tmpdir());
const second = await backend.execute(request);
console.log(JSON.stringify([first, second].map((r) => (r.ok ? { ok: true } : { code: r.error.code, reason: r.error.details.reason, message: r.error.message }))));
await backend.shutdown();`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(run.stderr).toBe('');
    const [first, second] = JSON.parse(run.stdout) as { code: string; reason: string; message: string }[];
    expect(first).toMatchObject({ code: 'WORKER_CRASHED', reason: 'start-failed' });
    // Before: "… could not run: ENOENT: no such file or directory, uv_cwd" on Node 20, nothing said of the host's working directory.
    expect(first!.message).toContain("(the host's working directory was removed: no worker thread starts until the host changes to one that exists, process.chdir())");
    expect(second).toEqual({ ok: true });
  });
});
