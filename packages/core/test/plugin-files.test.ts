/**
 * What health() says of a plugin whose code is not there (src/host/plugin-files.ts), on real
 * folders: nothing while one of its handlers' entries is there, else each missing entry once, at
 * most three of them named.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missingFilesOf } from '../src/host/plugin-files.js';
import type { RegisteredPlugin } from '../src/host/plugin-registry.js';

let root: string;

/** A registered plugin in `root` whose handlers have these entries. */
function plugin(entries: string[]): RegisteredPlugin {
  const handlers = Object.fromEntries(entries.map((entry, i) => [`h${i}`, { entry }]));
  return { id: '@x/files', root, manifest: { id: '@x/files', version: '1.0.0', handlers }, generation: 0, moduleKey: 0 } as unknown as RegisteredPlugin;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-plugin-files-'));
  await writeFile(path.join(root, 'built.mjs'), 'export default () => 1;\n');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('missingFilesOf', () => {
  it('says nothing of a plugin one of whose entries is there, though another is not (left to that handler\'s executions)', async () => {
    expect(await missingFilesOf(plugin(['./dist/missing.mjs', './built.mjs']))).toBeUndefined();
    expect(await missingFilesOf(plugin(['./built.mjs', './dist/missing.mjs']))).toBeUndefined();
  });

  it('names each missing entry once (two handlers of one entry), at most three of them and then …', async () => {
    expect(await missingFilesOf(plugin(['./a.js', './b.js', './a.js']))).toBe(`plugin "@x/files": none of its handlers' entries exists in ${root} (./a.js, ./b.js): is it built?`);
    expect(await missingFilesOf(plugin(['./a.js', './b.js', './c.js']))).toBe(`plugin "@x/files": none of its handlers' entries exists in ${root} (./a.js, ./b.js, ./c.js): is it built?`);
    expect(await missingFilesOf(plugin(['./a.js', './b.js', './c.js', './d.js']))).toBe(`plugin "@x/files": none of its handlers' entries exists in ${root} (./a.js, ./b.js, ./c.js …): is it built?`);
  });
});
