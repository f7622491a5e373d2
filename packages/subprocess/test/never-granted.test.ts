import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectError } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend, type SubprocessBackendOptions } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

// A child never loads a native addon (docs/backends/subprocess.md, Permissions: "native addons …
// never"): Node's permission model refuses it with ERR_DLOPEN_DISABLED before reading the file,
// so the addon here need not be a real one. That refusal is the backend's, as WASI's is.
const PLUGIN = '@subprocess-test/never-granted';
let root: string;
let plugin: string;
const backends: SubprocessBackend[] = [];

function make(options: SubprocessBackendOptions): SubprocessBackend {
  const backend = new SubprocessBackend({ plugins: [plugin], workspace: { root }, ...options });
  backends.push(backend);
  return backend;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-addon-ws-'));
  plugin = await mkdtemp(path.join(os.tmpdir(), 'kb-addon-plugin-'));
  // Readable by the sandbox user of a root host.
  await chmod(plugin, 0o755);
  await writeFile(path.join(plugin, 'addon.node'), 'not an ELF file\n');
  await writeFile(path.join(plugin, 'required.cjs'), "module.exports = async () => require('./addon.node');\n");
  await writeFile(path.join(plugin, 'dlopen.mjs'), "export default async () => { process.dlopen({ exports: {} }, new URL('./addon.node', import.meta.url).pathname); return 'loaded'; };\n");
  await writeFile(path.join(plugin, 'wasi.mjs'), "import { WASI } from 'node:wasi';\nexport default async () => { new WASI({ version: 'preview1' }); return 'made'; };\n");
  await writeFile(path.join(plugin, 'inspector.mjs'), "import inspector from 'node:inspector';\nexport default async () => { new inspector.Session().connect(); return 'connected'; };\n");
  const handlers = { required: { entry: 'required.cjs' }, dlopen: { entry: 'dlopen.mjs' }, wasi: { entry: 'wasi.mjs' }, inspector: { entry: 'inspector.mjs' } };
  await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: PLUGIN, version: '1.0.0', handlers }));
});

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
  expect(await readdir(root)).toEqual([]);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(plugin, { recursive: true, force: true });
});

const sandboxes: SubprocessBackendOptions['sandbox'][] = process.platform === 'linux' ? ['off', 'required'] : ['off'];

describe.each(sandboxes)('a native addon (sandbox %s)', (sandbox) => {
  it.each(['required', 'dlopen'])('loaded by %s is PERMISSION_DENIED (resource "addon"), saying no manifest allows one', async (handlerId) => {
    const result = await make({ sandbox }).execute({ pluginId: PLUGIN, handlerId });
    // Before: HANDLER_ERROR "Cannot load native addon because loading addons is disabled.", naming neither the backend nor what to do.
    expectError(result, 'PERMISSION_DENIED');
    expect(result.error.message).toBe(
      `Handler "${handlerId}" of plugin "${PLUGIN}" was denied addon: the subprocess backend lets no child load a native addon (a .node file), whatever the manifest declares; run the plugin on another backend`,
    );
    expect(result.error.details).toMatchObject({ resource: 'addon', phase: 'runtime' });
    expect(result.error.cause).toMatchObject({ code: 'ERR_DLOPEN_DISABLED' });
  });
});

describe.each(sandboxes)('WASI and the inspector (sandbox %s)', (sandbox) => {
  it.each([
    ['wasi', 'WASI', 'use WASI (node:wasi)'],
    ['inspector', 'Inspector:Connect', "open Node's inspector"],
  ])('%s is PERMISSION_DENIED saying no manifest allows it', async (handlerId, resource, what) => {
    const result = await make({ sandbox }).execute({ pluginId: PLUGIN, handlerId });
    expectError(result, 'PERMISSION_DENIED');
    // Before: "… was denied WASI: not within what its manifest declares (its plugin folder, …)", as if a declaration would lift it.
    expect(result.error.message).toBe(
      `Handler "${handlerId}" of plugin "${PLUGIN}" was denied ${resource}: the subprocess backend lets no child ${what}, whatever the manifest declares; run the plugin on another backend`,
    );
    expect(result.error.details).toMatchObject({ resource, phase: 'runtime' });
  });
});
