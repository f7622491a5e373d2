/**
 * An entry written without its file's extension (`./dist/run`, the build's `./dist/run.js` there):
 * the execution's HANDLER_NOT_FOUND and health()'s line name the file to give, rather than saying
 * the module does not exist, or asking whether the plugin is built.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunnerSession, type RunnerResult, type RunnerTask } from '../src/backend-kit.js';
import { missingFilesOf } from '../src/host/plugin-files.js';
import type { RegisteredPlugin } from '../src/host/plugin-registry.js';

let root: string;

function task(entryPath: string): RunnerTask {
  return { executionId: `exec-${path.basename(entryPath)}`, pluginId: '@t/ext', handlerId: 'run', pluginRoot: root, entryPath, exportName: 'default', input: undefined, context: { host: { kind: 'test' } }, workspaceDir: undefined, permissions: {}, timeoutMs: 10_000, memoryMb: undefined };
}

async function failureOf(entry: string): Promise<{ code: unknown; message: unknown }> {
  const result = (await new RunnerSession(task(path.join(root, entry)), () => undefined).run()) as RunnerResult & { ok: false; error: { code: unknown; message: unknown } };
  expect(result.ok).toBe(false);
  return { code: result.error.code, message: result.error.message };
}

function plugin(entries: string[]): RegisteredPlugin {
  const handlers = Object.fromEntries(entries.map((entry, i) => [`h${i}`, { entry }]));
  return { id: '@t/ext', root, manifest: { id: '@t/ext', version: '1.0.0', handlers }, generation: 0, moduleKey: 0 } as unknown as RegisteredPlugin;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-entry-extension-'));
  await mkdir(path.join(root, 'dist'));
  await writeFile(path.join(root, 'dist', 'run.js'), 'export default async () => 1;\n');
  await writeFile(path.join(root, 'dist', 'build.cjs'), 'module.exports = async () => 2;\n');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('an entry without its extension', () => {
  it('is HANDLER_NOT_FOUND naming the file there with the extension to add', async () => {
    expect(await failureOf('dist/run')).toEqual({
      code: 'HANDLER_NOT_FOUND',
      message: `Handler "run" of plugin "@t/ext": module ${path.join(root, 'dist', 'run')} does not exist; ${path.join(root, 'dist', 'run.js')} does: Node adds no extension to a module's path, so give the entry in kb.plugin.json with its ".js"`,
    });
    expect((await failureOf('dist/build')).message).toMatch(/dist\/build\.cjs does: Node adds no extension to a module's path, so give the entry in kb\.plugin\.json with its "\.cjs"$/);
  });

  it('keeps the plain message when no file with an extension is there, or the entry has one', async () => {
    expect((await failureOf('dist/gone')).message).toBe(`Handler "run" of plugin "@t/ext": module ${path.join(root, 'dist', 'gone')} does not exist`);
    expect((await failureOf('dist/run.mjs')).message).toBe(`Handler "run" of plugin "@t/ext": module ${path.join(root, 'dist', 'run.mjs')} does not exist`);
  });

  it('is named by health() with the file to give, not as a plugin not built', async () => {
    expect(await missingFilesOf(plugin(['./dist/run']))).toBe(`plugin "@t/ext": none of its handlers' entries exists in ${root} (./dist/run): ./dist/run.js is there: give each entry in kb.plugin.json with its extension (Node adds none)`);
    expect(await missingFilesOf(plugin(['./dist/gone']))).toBe(`plugin "@t/ext": none of its handlers' entries exists in ${root} (./dist/gone): is it built?`);
  });
});
