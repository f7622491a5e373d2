import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type NatsServer } from '../../../scripts/nats-server.mjs';
import { PUBLISHED, fromRepo, packPublished, readmeBlock, repo, run, runOk, type Manifest, type Run } from './packed.js';

// What a user gets from the registry: every published package packed as `pnpm publish` packs it,
// installed with npm (its flat layout, third-party dependencies from the registry) into projects
// outside the workspace, then used by an ESM host, a CommonJS host, a TypeScript host and the CLI.
const tsc = fromRepo.resolve('typescript/bin/tsc');
const typesNodeVersion = (fromRepo('@types/node/package.json') as { version: string }).version;
const LOCAL_BACKENDS = ['in-process', 'worker-pool', 'subprocess'] as const;
/** For a backend author's tests (it needs vitest), not a host's: its project is conformance-package.test.ts's. */
const CONFORMANCE = '@kb-labs/plugin-execution-conformance';

const PLUGIN_MANIFEST = {
  id: '@fixture/greeter',
  version: '1.0.0',
  handlers: { greet: { entry: './greet.mjs', timeoutMs: 20_000 }, echo: { entry: './echo.mjs' } },
  channels: [{ path: '/echo', handler: 'echo' }],
};
const PLUGIN_HANDLER = 'export default async (input) => ({ greeting: `hello, ${input.name}` });\n';
/** The channel's handler: answers each message with what it got. */
const CHANNEL_HANDLER = "export default async (input) => (input.event === 'message' ? { echoed: input.data } : undefined);\n";

/** One execution of the fixture plugin per backend type; plain JavaScript shared by every host. */
const RUN_EACH = `async function runEach(createExecutionBackend, plugin, types) {
  const results = {};
  for (const type of types) {
    const backend = createExecutionBackend({ type, plugins: [plugin] });
    try {
      const result = await backend.execute({ pluginId: '@fixture/greeter', handlerId: 'greet', input: { name: type } });
      results[type] = result.ok ? { data: result.data, backend: result.meta.backend } : { code: result.error.code, message: result.error.message };
    } finally {
      await backend.shutdown();
    }
  }
  return results;
}
`;

const ESM_HOST = `import path from 'node:path';
import { createExecutionBackend } from '@kb-labs/plugin-execution';
${RUN_EACH}
const results = await runEach(createExecutionBackend, path.join(import.meta.dirname, 'plugin'), process.argv.slice(2));
process.stdout.write(JSON.stringify({ entry: path.basename(import.meta.resolve('@kb-labs/plugin-execution')), results }));
`;

const CJS_HOST = `const path = require('node:path');
const { createExecutionBackend } = require('@kb-labs/plugin-execution');
${RUN_EACH}
runEach(createExecutionBackend, path.join(__dirname, 'plugin'), process.argv.slice(2)).then((results) => {
  process.stdout.write(JSON.stringify({ entry: path.basename(require.resolve('@kb-labs/plugin-execution')), results }));
});
`;

/**
 * A WebSocket host: an HTTP server on a loopback port with the plugin's channel mounted on a
 * worker-pool backend, and a client (ws, installed with channels) that sends one message.
 */
const CHANNEL_HOST = `import http from 'node:http';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { WebSocket } from 'ws';
import { createExecutionBackend, mountWebSocketChannels } from '@kb-labs/plugin-execution';
const plugin = path.join(import.meta.dirname, 'plugin');
const backend = createExecutionBackend({ type: 'worker-pool', plugins: [plugin], workspace: false, maxThreads: 1 });
const server = http.createServer((req, res) => res.writeHead(404).end());
mountWebSocketChannels(server, JSON.parse(readFileSync(path.join(plugin, 'kb.plugin.json'), 'utf8')), { backend });
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const socket = new WebSocket('ws://127.0.0.1:' + server.address().port + '/echo');
const frames = [];
await new Promise((resolve, reject) => {
  socket.on('error', reject);
  socket.on('message', (text) => {
    const frame = JSON.parse(String(text));
    frames.push(frame);
    if (frame.type === 'ready') socket.send(JSON.stringify({ id: 'm1', data: { text: 'hi' } }));
    else resolve();
  });
});
socket.close();
await backend.shutdown();
server.close();
process.stdout.write(JSON.stringify(frames));
`;

/**
 * The queue backend from the installed packages (its NATS client from the registry): a worker
 * on in-process and a host in one process, through a real nats-server whose URL is argv[2].
 */
const QUEUE_HOST = `import path from 'node:path';
import { createExecutionBackend, startExecutionWorker } from '@kb-labs/plugin-execution';
const plugin = path.join(import.meta.dirname, 'plugin');
const connection = { servers: process.argv[2] };
const worker = await startExecutionWorker({ connection, pool: 'pack-install', plugins: [plugin], backend: { type: 'in-process' }, concurrency: 1 });
const backend = createExecutionBackend({ type: 'queue', connection, pool: 'pack-install', plugins: [plugin] });
try {
  const result = await backend.execute({ pluginId: '@fixture/greeter', handlerId: 'greet', input: { name: 'queue' } });
  process.stdout.write(JSON.stringify(result.ok ? { data: result.data, backend: result.meta.backend } : { code: result.error.code, message: result.error.message }));
} finally {
  await backend.shutdown();
  await worker.drain({ timeoutMs: 5000 });
}
`;

/** A host with core and one backend package only: createExecutionBackend comes from core. */
const CORE_HOST = `import path from 'node:path';
import { createExecutionBackend } from '@kb-labs/plugin-execution-core';
${RUN_EACH}
const results = await runEach(createExecutionBackend, path.join(import.meta.dirname, 'plugin'), process.argv.slice(2));
process.stdout.write(JSON.stringify({ results }));
`;

const TS_ESM_HOST = `import { createExecutionBackend, type ExecutionResult } from '@kb-labs/plugin-execution';
import { WorkerPoolBackend } from '@kb-labs/plugin-execution-worker-pool';

const backend = createExecutionBackend({ type: 'worker-pool', plugins: ['./plugin'], maxThreads: 2 });
const result: ExecutionResult = await backend.execute({ pluginId: '@fixture/greeter', handlerId: 'greet', input: { name: 'ts' } });
if (result.ok) console.log(result.data, result.meta.durationMs);
else console.error(result.error.code, result.error.message);
await backend.shutdown();
await new WorkerPoolBackend({ plugins: ['./plugin'] }).shutdown();
// @ts-expect-error a misspelt option does not compile
createExecutionBackend({ type: 'worker-pool', maxThread: 2 });
`;

const TS_CJS_HOST = `import { createExecutionBackend, isExecutionError } from '@kb-labs/plugin-execution';
import type { SubprocessBackendOptions } from '@kb-labs/plugin-execution-subprocess';

async function main(): Promise<void> {
  const options: SubprocessBackendOptions = { plugins: ['./plugin'], prespawn: 1 };
  const backend = createExecutionBackend({ type: 'subprocess', ...options });
  const result = await backend.execute({ pluginId: '@fixture/greeter', handlerId: 'greet', input: { name: 'cts' } });
  if (!result.ok && isExecutionError(result.error)) console.error(result.error.code);
  await backend.shutdown();
}
void main();
`;

/**
 * The same through a backend class, for TypeScript's older resolution (`module: commonjs` defaults to node10), which reads no `exports`:
 * core's subpaths, the manifest's JSON Schema included, are found through its `typesVersions`.
 */
const TS_NODE10_HOST = `import { WorkerPoolBackend } from '@kb-labs/plugin-execution-worker-pool';
import { createExecutionBackend } from '@kb-labs/plugin-execution';
import manifestSchema from '@kb-labs/plugin-execution-core/kb.plugin.schema.json';

console.log('manifest schema', manifestSchema.$schema satisfies string);

async function main(): Promise<void> {
  const backend = new WorkerPoolBackend({ plugins: ['./plugin'], maxThreads: 1 });
  const result = await backend.execute({ pluginId: '@fixture/greeter', handlerId: 'greet', input: { name: 'node10' } });
  if (!result.ok) console.error(result.error.code, result.error.details);
  await backend.shutdown();
  await createExecutionBackend({ type: 'in-process', plugins: ['./plugin'] }).shutdown();
}
void main();
`;

/** The README's plugin on a backend made with `await using`, which shuts it down at the end of its block. */
const USING_HOST = `import { createExecutionBackend, type IExecutionBackend } from '@kb-labs/plugin-execution';

let made: IExecutionBackend | undefined;
{
  await using backend = createExecutionBackend({ type: 'in-process', plugins: ['./plugins/my-plugin'], platform: { kv: { get: async () => 'yesterday' } }, workspace: false });
  made = backend;
  const result = await backend.execute({ pluginId: '@my-org/my-plugin', handlerId: 'run', input: { args: [] }, context: { permissions: { platform: { kv: ['get'] } } } });
  console.log(result.ok ? (result.data as { cached: string }).cached : result.error.message);
}
console.log('shut down:', (await made.health()).state);
`;

/** A project outside the workspace with the fixture plugin and the hosts, `npm install`ing `specs`. */
/**
 * `in`: the folder the project is moved to once installed (npm's flat node_modules has no paths in
 * it): one whose path a URL would misread ("#", "%41") shows how a CommonJS build finds its own files.
 */
async function createProject(dir: string, specs: string[], files: Record<string, string>, options: { in?: string } = {}): Promise<string> {
  await mkdir(path.join(dir, 'plugin'), { recursive: true });
  await writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: path.basename(dir), version: '0.0.0', private: true }));
  await writeFile(path.join(dir, 'plugin', 'kb.plugin.json'), JSON.stringify(PLUGIN_MANIFEST));
  await writeFile(path.join(dir, 'plugin', 'greet.mjs'), PLUGIN_HANDLER);
  await writeFile(path.join(dir, 'plugin', 'echo.mjs'), CHANNEL_HANDLER);
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  await runOk('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...specs], dir);
  if (options.in === undefined) return dir;
  await rename(dir, options.in);
  return options.in;
}

/** The tarballs of every published package a host installs: all but the conformance suite. */
function hostTarballs(tarballs: Map<string, string>): string[] {
  return [...tarballs].filter(([name]) => name !== CONFORMANCE).map(([, tarball]) => tarball);
}

/** The @kb-labs packages a project's node_modules holds, each with where npm installed it from. */
async function installedKbPackages(project: string): Promise<Record<string, string>> {
  const lock = JSON.parse(await readFile(path.join(project, 'package-lock.json'), 'utf8')) as { packages: Record<string, { resolved?: string }> };
  const names = await readdir(path.join(project, 'node_modules', '@kb-labs'));
  return Object.fromEntries(names.map((name) => [`@kb-labs/${name}`, lock.packages[`node_modules/@kb-labs/${name}`]?.resolved ?? '']));
}

/** A tarball's file list, and one file's text. */
async function tarballFiles(tarball: string): Promise<string[]> {
  return (await runOk('tar', ['-tzf', tarball], path.dirname(tarball))).stdout.split('\n').filter(Boolean);
}
async function tarballText(tarball: string, file: string): Promise<string> {
  return (await runOk('tar', ['-xzOf', tarball, `package/${file}`], path.dirname(tarball))).stdout;
}

function parseOutput(result: Run): { entry?: string; results: Record<string, { data?: unknown; backend?: string; code?: string; message?: string }> } {
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout);
}

describe('the packed packages, installed with npm outside the workspace', () => {
  let root: string;
  /** Package name → its tarball. */
  const tarballs = new Map<string, string>();
  let full: string;
  let coreOnly: string;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-pack-install-'));
    const packed = path.join(root, 'tarballs');
    await mkdir(packed);
    for (const [name, tarball] of await packPublished(packed)) tarballs.set(name, tarball);
    const tarball = (name: string) => tarballs.get(name)!;
    [full, coreOnly] = await Promise.all([
      createProject(path.join(root, 'full'), [...hostTarballs(tarballs), `@types/node@${typesNodeVersion}`], {
        'host.mjs': ESM_HOST,
        'host.cjs': CJS_HOST,
        'channel-host.mjs': CHANNEL_HOST,
        'queue-host.mjs': QUEUE_HOST,
        'host.mts': TS_ESM_HOST,
        'host.cts': TS_CJS_HOST,
        // skipLibCheck off: every installed declaration is checked, ours and our dependencies'. Not TypeScript's own
        // lib files (skipDefaultLibCheck), which come with the compiler, not the install: a fifth of each tsc's CPU.
        'tsconfig.json': JSON.stringify({
          compilerOptions: { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', types: ['node'], skipLibCheck: false, skipDefaultLibCheck: true },
          files: ['host.mts', 'host.cts'],
        }),
        'host-node10.ts': TS_NODE10_HOST,
        'tsconfig.node10.json': JSON.stringify({
          compilerOptions: { strict: true, noEmit: true, module: 'commonjs', moduleResolution: 'node10', target: 'es2022', types: ['node'], esModuleInterop: true, resolveJsonModule: true, skipLibCheck: false, skipDefaultLibCheck: true },
          files: ['host-node10.ts'],
        }),
      // Before, in such a folder, tsup's shim of import.meta.url cut the path at "#": every CommonJS execution failed, "Cannot find module 'zod'".
      }, { in: path.join(root, 'full #1 %41') }),
      createProject(path.join(root, 'core-only'), [tarball('@kb-labs/plugin-execution-core'), tarball('@kb-labs/plugin-execution-in-process')], { 'host.mjs': CORE_HOST }),
    ]);
  }, 300_000);

  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('packs every published package with a LICENSE, a README without links that break off the repository, and a manifest a registry can serve', async () => {
    expect(PUBLISHED.map(({ manifest }) => manifest.name)).toContain('@kb-labs/plugin-execution');
    const license = await readFile(path.join(repo, 'LICENSE'), 'utf8');
    for (const { manifest } of PUBLISHED) {
      const tarball = tarballs.get(manifest.name)!;
      const files = await tarballFiles(tarball);
      expect(files, manifest.name).toEqual(expect.arrayContaining(['package/LICENSE', 'package/README.md', 'package/package.json']));
      expect(await tarballText(tarball, 'LICENSE'), manifest.name).toBe(license);
      const packed = JSON.parse(await tarballText(tarball, 'package.json')) as Manifest;
      expect(packed.license, manifest.name).toBe('SEE LICENSE IN LICENSE');
      // No specifier only the workspace understands; no devDependencies (tools for working on the repository).
      expect(JSON.stringify(packed), manifest.name).not.toMatch(/workspace:|catalog:/);
      expect(packed.devDependencies, manifest.name).toBeUndefined();
      const readme = await tarballText(tarball, 'README.md');
      // A link is absolute (a URL) or an anchor: a relative one points into the repository, not the tarball.
      expect(readme.match(/\]\((?![a-z][a-z\d+.-]*:|#)[^)]*\)/gi), manifest.name).toBeNull();
      expect(readme, manifest.name).not.toContain('../');
    }
  });

  it('names the @kb-labs packages it depends on with a caret range of their version, so that a patch release of one satisfies the others', async () => {
    const versions = new Map(PUBLISHED.map(({ manifest }) => [manifest.name, manifest.version]));
    for (const { manifest } of PUBLISHED) {
      const packed = JSON.parse(await tarballText(tarballs.get(manifest.name)!, 'package.json')) as { dependencies?: Record<string, string>; peerDependencies?: Record<string, string> };
      const internal = Object.entries({ ...packed.dependencies, ...packed.peerDependencies }).filter(([name]) => name.startsWith('@kb-labs/'));
      for (const [name, range] of internal) expect(range, `${manifest.name} → ${name}`).toBe(`^${versions.get(name)}`);
    }
  });

  it('a patch release of one backend installs beside the others, with one copy of core, and runs', async () => {
    const { manifest } = PUBLISHED.find(({ manifest }) => manifest.name === '@kb-labs/plugin-execution-worker-pool')!;
    const [major, minor, patch] = manifest.version.split('.').map(Number);
    const patchVersion = `${major}.${minor}.${patch! + 1}`;
    // The worker-pool tarball as its next patch release would be: the same files, the next version.
    const patched = path.join(root, 'patched-tarball');
    await mkdir(patched);
    await runOk('tar', ['-xzf', tarballs.get(manifest.name)!], patched);
    const manifestFile = path.join(patched, 'package', 'package.json');
    await writeFile(manifestFile, JSON.stringify({ ...JSON.parse(await readFile(manifestFile, 'utf8')), version: patchVersion }, null, 2));
    const patchedTarball = path.join(patched, `worker-pool-${patchVersion}.tgz`);
    await runOk('tar', ['-czf', patchedTarball, 'package'], patched);
    const others = hostTarballs(tarballs).filter((tarball) => tarball !== tarballs.get(manifest.name));
    const project = await createProject(path.join(root, 'patched'), [...others, patchedTarball], { 'host.mjs': ESM_HOST });
    const lock = JSON.parse(await readFile(path.join(project, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };
    expect(Object.keys(lock.packages).filter((key) => key.endsWith('/@kb-labs/plugin-execution-core'))).toEqual(['node_modules/@kb-labs/plugin-execution-core']);
    expect(lock.packages['node_modules/@kb-labs/plugin-execution-worker-pool']?.version).toBe(patchVersion);
    const { results } = parseOutput(await run(process.execPath, ['host.mjs', 'worker-pool'], project));
    expect(results['worker-pool']).toEqual({ data: { greeting: 'hello, worker-pool' }, backend: 'worker-pool' });
  }, 120_000);

  it('installs the tarballs themselves, not packages of the same name from the registry', async () => {
    const installed = await installedKbPackages(full);
    expect(Object.keys(installed).sort()).toEqual(PUBLISHED.map(({ manifest }) => manifest.name).filter((name) => name !== CONFORMANCE).sort());
    for (const [name, resolved] of Object.entries(installed)) expect(resolved, name).toMatch(/^file:.*\.tgz$/);
  });

  it('an ESM host runs a plugin on each local backend', async () => {
    const { entry, results } = parseOutput(await run(process.execPath, ['host.mjs', ...LOCAL_BACKENDS], full));
    expect(entry).toBe('index.js');
    for (const type of LOCAL_BACKENDS) expect(results[type], type).toEqual({ data: { greeting: `hello, ${type}` }, backend: type });
  }, 60_000);

  it('a CommonJS host runs it through require()', async () => {
    const { entry, results } = parseOutput(await run(process.execPath, ['host.cjs', ...LOCAL_BACKENDS], full));
    expect(entry).toBe('index.cjs');
    for (const type of LOCAL_BACKENDS) expect(results[type], type).toEqual({ data: { greeting: `hello, ${type}` }, backend: type });
  }, 60_000);

  it('a WebSocket host serves the plugin\'s channel on a worker-pool backend', async () => {
    const result = await run(process.execPath, ['channel-host.mjs'], full);
    expect(result.status, result.stderr).toBe(0);
    const frames = JSON.parse(result.stdout) as Array<{ type: string; replyTo?: string; data?: unknown }>;
    expect(frames.map((frame) => frame.type)).toEqual(['ready', 'reply']);
    expect(frames[1]).toMatchObject({ replyTo: 'm1', data: { echoed: { text: 'hi' } } });
  }, 60_000);

  it('a queue host and worker run the plugin through a real nats-server', async () => {
    const server: NatsServer = await startNatsServer();
    try {
      const result = await run(process.execPath, ['queue-host.mjs', server.url], full);
      expect(result.status, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual({ data: { greeting: 'hello, queue' }, backend: 'queue' });
    } finally {
      await server.stop();
    }
  }, 60_000);

  it('a TypeScript host (ESM and CommonJS) type-checks under strict against the installed types', async () => {
    const check = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], full);
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
  }, 180_000); // tsc: ~15 s here, several times that on a busy machine

  it("the README's quick start as written: its tsconfig.json and host.mts compile with tsc, and the compiled host runs its plugin", async () => {
    // Before, the README named the tsconfig's options but not "module": TypeScript 5's default (CommonJS) refused host.mts's top-level await (TS1378).
    const quickStart = path.join(full, 'quick-start');
    const plugin = path.join(quickStart, 'plugins', 'my-plugin');
    await mkdir(path.join(plugin, 'dist'), { recursive: true });
    await writeFile(path.join(quickStart, 'tsconfig.json'), await readmeBlock('json', '{ "compilerOptions"'));
    await writeFile(path.join(quickStart, 'host.mts'), await readmeBlock('ts', '// host.mts'));
    await writeFile(path.join(plugin, 'kb.plugin.json'), await readmeBlock('json', '{\n  "id": "@my-org/my-plugin"'));
    await writeFile(path.join(plugin, 'package.json'), await readmeBlock('json', '{ "type": "module" }'));
    await writeFile(path.join(plugin, 'dist', 'run.js'), await readmeBlock('js', '// plugins/my-plugin/dist/run.js'));
    // The README's `await using backend = createExecutionBackend(...)`, compiled with the same tsconfig: before, it had no
    // target, which TypeScript 5 takes from nodenext as esnext, and kept `await using` (Node 20 and 22: SyntaxError).
    await writeFile(path.join(quickStart, 'using.mts'), USING_HOST);
    const compiled = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], quickStart);
    expect(compiled.stdout + compiled.stderr).toBe('');
    const host = await run(process.execPath, ['host.mjs'], quickStart);
    expect(host.status, host.stderr).toBe(0);
    // onLog's message, onEvent's event, then the result's data.
    expect(host.stdout).toMatch(/^running\n\{ type: 'progress', percent: 50 \}\n\{\n {2}args: \[ '--verbose' \],\n {2}cached: 'yesterday',/);
    const using = await run(process.execPath, ['using.mjs'], quickStart);
    expect(using.status, using.stderr).toBe(0);
    expect(using.stdout).toBe('yesterday\nshut down: closed\n');
  }, 180_000);

  it("TypeScript's older resolution (node10, the default of module: commonjs) finds every package's types, core's subpaths (the backend kit, the manifest's JSON Schema) included", async () => {
    const check = await run(process.execPath, [tsc, '-p', 'tsconfig.node10.json'], full);
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
  }, 180_000); // tsc: ~15 s here, several times that on a busy machine

  it('the CLI prints its version and runs the plugin', async () => {
    const umbrella = PUBLISHED.find(({ manifest }) => manifest.name === '@kb-labs/plugin-execution')!.manifest;
    const version = await runOk('npx', ['--no', '--', 'kb-plugin-exec', '--version'], full);
    expect(version.stdout.trim()).toBe(`kb-plugin-exec ${umbrella.version}`);
    const plain = await runOk('npx', ['--no', '--', 'kb-plugin-exec', 'run', './plugin', 'greet', '--input', '{"name":"cli"}'], full);
    expect(JSON.parse(plain.stdout)).toEqual({ greeting: 'hello, cli' });
    const pooled = await runOk('npx', ['--no', '--', 'kb-plugin-exec', 'run', './plugin', 'greet', '--input', '{"name":"pool"}', '--backend', 'worker-pool', '--json'], full);
    expect(JSON.parse(pooled.stdout)).toMatchObject({ ok: true, data: { greeting: 'hello, pool' }, meta: { backend: 'worker-pool' } });
  }, 60_000);

  it('core plus one backend: runs on that backend, and names the package to install for another', async () => {
    const installed = await installedKbPackages(coreOnly);
    expect(Object.keys(installed).sort()).toEqual(['@kb-labs/plugin-execution-core', '@kb-labs/plugin-execution-in-process']);
    const { results } = parseOutput(await run(process.execPath, ['host.mjs', 'in-process', 'worker-pool'], coreOnly));
    expect(results['in-process']).toEqual({ data: { greeting: 'hello, in-process' }, backend: 'in-process' });
    expect(results['worker-pool']).toMatchObject({ code: 'BACKEND_NOT_INSTALLED' });
    expect(results['worker-pool']!.message).toContain('npm install @kb-labs/plugin-execution-worker-pool');
  }, 60_000);
});
