import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PluginRegistry, isExecutionError } from '@kb-labs/plugin-execution-core';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A path with a `,` or a `*` cannot be granted under Node's permission model, and Node imports no
// module from a plugin folder with a `\`: said when the backend is made or the plugin registered,
// naming the option, not by every execution.
const linux = process.platform === 'linux';
let scratch: string;
const backends: SubprocessBackend[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kb-ungrantable-'));
  await chmod(scratch, 0o755);
});
afterAll(async () => {
  await Promise.all(backends.map((b) => b.shutdown()));
  await rm(scratch, { recursive: true, force: true });
});

async function pluginIn(name: string, id: string): Promise<string> {
  const root = path.join(scratch, name);
  await mkdir(root, { recursive: true, mode: 0o755 });
  await writeFile(path.join(root, 'handler.mjs'), 'export default () => "ran";\n');
  await writeFile(path.join(root, 'kb.plugin.json'), JSON.stringify({ id, version: '1.0.0', handlers: { run: { entry: './handler.mjs' } } }));
  return root;
}

function made(options: ConstructorParameters<typeof SubprocessBackend>[0]): SubprocessBackend {
  const backend = new SubprocessBackend({ sandbox: 'off', ...options });
  backends.push(backend);
  return backend;
}

function thrownBy(make: () => unknown): { code?: string; message: string; details: Record<string, unknown> } {
  try {
    make();
  } catch (error) {
    if (isExecutionError(error)) return error as never;
    throw error;
  }
  throw new Error('nothing thrown');
}

describe.runIf(linux)('paths the subprocess backend cannot grant', () => {
  it.each([',', '*'])('a workspace root with "%s": VALIDATION_ERROR from the constructor naming workspace.root', (character) => {
    const root = path.join(scratch, `ws${character}root`);
    const error = thrownBy(() => made({ workspace: { root } }));
    expect(error.code).toBe('VALIDATION_ERROR');
    expect(error.details).toMatchObject({ path: 'workspace.root', value: root });
    expect(error.message).toContain(`workspace.root ${JSON.stringify(root)} contains "${character}"`);
  });

  it('a workspace root with a comma without the permission model (enforcePermissions: false): made, and its handlers run', async () => {
    const plugin = await pluginIn('plain', '@ungrantable/plain');
    const backend = made({ workspace: { root: path.join(scratch, 'ws,free') }, enforcePermissions: false, plugins: [plugin] });
    const result = await backend.execute({ pluginId: '@ungrantable/plain', handlerId: 'run' });
    expect(result).toMatchObject({ ok: true, data: 'ran' });
  });

  it('a plugin folder with "*" in the plugins option: VALIDATION_ERROR from the constructor naming plugins[i]', async () => {
    const plugin = await pluginIn('star*plugin', '@ungrantable/star');
    const error = thrownBy(() => made({ workspace: false, plugins: [plugin] }));
    expect(error.code).toBe('VALIDATION_ERROR');
    expect(error.details).toMatchObject({ path: 'plugins[0]', value: plugin, reason: 'wildcard-in-path' });
  });

  it('registerPlugin() of a folder with "," is refused (VALIDATION_ERROR naming the folder); one with "\\\\" even without the permission model', async () => {
    const comma = await pluginIn('comma,plugin', '@ungrantable/comma');
    const backslash = await pluginIn('back\\slash', '@ungrantable/backslash');
    await expect(made({ workspace: false }).registerPlugin(comma)).rejects.toMatchObject({ code: 'VALIDATION_ERROR', details: { value: comma, reason: 'comma-in-path' } });
    const unenforced = made({ workspace: false, enforcePermissions: false });
    await expect(unenforced.registerPlugin(comma)).resolves.toMatchObject({ id: '@ungrantable/comma' });
    await expect(unenforced.registerPlugin({ root: backslash, manifest: { id: '@ungrantable/backslash', version: '1.0.0', handlers: { run: { entry: './handler.mjs' } } } })).rejects.toMatchObject({
      code: 'VALIDATION_ERROR',
      message: expect.stringContaining('contains "\\"'),
    });
  });

  it('health() names a plugin of a shared registry whose folder could never run here; its executions are still refused', async () => {
    const registry = new PluginRegistry();
    await registry.load(await pluginIn('shared,plugin', '@ungrantable/shared'));
    const backend = made({ workspace: false, registry });
    const health = await backend.health();
    expect(health.problems.join('\n')).toContain('plugin "@ungrantable/shared" can never run on the subprocess backend');
    const result = await backend.execute({ pluginId: '@ungrantable/shared', handlerId: 'run' });
    expect(result).toMatchObject({ ok: false, error: { code: 'VALIDATION_ERROR' } });
  });
});
