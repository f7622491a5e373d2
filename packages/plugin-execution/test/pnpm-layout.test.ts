import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { packPublished, pnpm, projectEnv, readmeBlock, repo, run, runOk } from './packed.js';

// pnpm's strict node_modules: a project sees only the packages it installed itself, not their
// dependencies. The README's plugin, as the README writes it, in a project that installed what
// the README's quick start says (the umbrella and zod), run by the quick start's host.
const zodVersion = (createRequire(path.join(repo, 'packages', 'core', 'package.json'))('zod/package.json') as { version: string }).version;

const HOST = `import { createExecutionBackend } from '@kb-labs/plugin-execution';
const store = new Map([['last-run', 'yesterday']]);
const results = {};
for (const type of ['in-process', 'worker-pool', 'subprocess']) {
  const backend = createExecutionBackend({ type, plugins: ['./plugins/my-plugin'], platform: { kv: { get: async (key) => store.get(key) } }, permissions: { platform: { kv: ['get'] } }, workspace: false });
  try {
    const result = await backend.execute({ pluginId: '@my-org/my-plugin', handlerId: 'run', input: { args: ['--verbose'] } });
    results[type] = result.ok ? result.data : { code: result.error.code, message: result.error.message };
  } finally {
    await backend.shutdown();
  }
}
process.stdout.write(JSON.stringify(results));
`;

describe("the README's plugin under pnpm's strict layout", () => {
  let root: string;
  let project: string;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-pnpm-layout-'));
    const packed = path.join(root, 'tarballs');
    await mkdir(packed);
    const tarballs = await packPublished(packed);
    project = path.join(root, 'project');
    const plugin = path.join(project, 'plugins', 'my-plugin');
    await mkdir(path.join(plugin, 'dist'), { recursive: true });
    // The umbrella from its tarball, and each package it depends on from its own (none is on the registry).
    const overrides = Object.fromEntries([...tarballs].filter(([name]) => name !== '@kb-labs/plugin-execution').map(([name, tarball]) => [name, `file:${tarball}`]));
    const manifest = { name: 'host', version: '0.0.0', private: true, type: 'module', dependencies: { '@kb-labs/plugin-execution': `file:${tarballs.get('@kb-labs/plugin-execution')}`, zod: zodVersion }, pnpm: { overrides } };
    await writeFile(path.join(project, 'package.json'), JSON.stringify(manifest));
    await writeFile(path.join(project, 'host.mjs'), HOST);
    await writeFile(path.join(plugin, 'kb.plugin.json'), await readmeBlock('json', '{\n  "id": "@my-org/my-plugin"'));
    await writeFile(path.join(plugin, 'package.json'), await readmeBlock('json', '{ "type": "module" }'));
    await writeFile(path.join(plugin, 'dist', 'run.js'), await readmeBlock('js', '// plugins/my-plugin/dist/run.js'));
    await writeFile(path.join(project, 'platform.mjs'), await readmeBlock('js', '// platform.mjs'));
    await runOk(process.execPath, [pnpm, 'install', '--prefer-offline', '--config.node-linker=isolated'], project);
  }, 300_000);

  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('runs on each local backend, its imports resolved from what the project installed', async () => {
    const result = await run(process.execPath, ['host.mjs'], project);
    expect(result.status, result.stderr).toBe(0);
    const expected = { args: ['--verbose'], cached: 'yesterday' };
    expect(JSON.parse(result.stdout)).toEqual({ 'in-process': expected, 'worker-pool': expected, subprocess: expected });
  }, 60_000);

  it("the README's command lines run as written (with the project's bin on PATH), the queue one through the README's worker", async () => {
    const readme = await readFile(path.join(repo, 'README.md'), 'utf8');
    const commandLine = readme.slice(readme.indexOf('## Command line'));
    const block = /```sh\n([\s\S]*?)```/.exec(commandLine)![1]!;
    // A server of the test's own in place of the README's nats://127.0.0.1:4222.
    const server = await startNatsServer();
    const lines = block.trim().split('\n').map((line) => line.replaceAll('nats://127.0.0.1:4222', server.url));
    const env = { ...projectEnv, PATH: `${path.join(project, 'node_modules', '.bin')}${path.delimiter}${projectEnv.PATH ?? ''}` };
    const workerLine = lines.find((line) => line.startsWith('kb-plugin-exec worker '))!;
    const worker = spawn('sh', ['-c', `exec ${workerLine}`], { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let workerOutput = '';
    worker.stdout.on('data', (chunk: Buffer) => (workerOutput += chunk.toString()));
    worker.stderr.on('data', (chunk: Buffer) => (workerOutput += chunk.toString()));
    try {
      await new Promise<void>((resolve, reject) => {
        worker.stdout.on('data', () => /ready \S+/.test(workerOutput) && resolve());
        worker.once('exit', () => reject(new Error(`the README's worker exited before it was ready:\n${workerOutput}`)));
      });
      // Every line but the worker (started above), init and sweep (cli.test.ts runs those).
      const runs = lines.filter((line) => !/^kb-plugin-exec (worker|init|sweep) /.test(line));
      expect(runs.filter((line) => line.includes('kb-plugin-exec run '))).toHaveLength(4);
      for (const line of runs) {
        const ran = spawnSync('sh', ['-c', line], { cwd: project, env, encoding: 'utf8', timeout: 30_000 });
        expect(ran.status, `${line}\n${ran.stderr}`).toBe(0);
        if (!line.includes('kb-plugin-exec run ')) continue;
        const printed = JSON.parse(ran.stdout) as { cached?: unknown; data?: { cached?: unknown } };
        // The handler read platform.mjs's kv.
        expect(line.includes('--json') ? printed.data?.cached : printed.cached, line).toBe('yesterday');
      }
    } finally {
      worker.kill('SIGTERM');
      await server.stop();
    }
  }, 120_000);
});
