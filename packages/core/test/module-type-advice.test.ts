import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mayLoadAsCommonJs, moduleTypeAdvice } from '../src/runner/nearest-package.js';

let root: string;

describe('what to do about an ES module Node loads as CommonJS', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-module-type-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('a JavaScript file is told .mjs, a TypeScript one .mts (Node strips no types from a .mjs)', () => {
    expect(moduleTypeAdvice(path.join(root, 'run.js'), root)).toMatch(/^Rename it to \.mjs, or put a package\.json with "type": "module" in the plugin folder/);
    expect(moduleTypeAdvice(path.join(root, 'run.ts'), root)).toMatch(/^Rename it to \.mts, or put a package\.json with "type": "module" in the plugin folder/);
    expect(moduleTypeAdvice(path.join(root, 'run.cjs'), root)).toBe('A .cjs file is CommonJS whatever a package.json says: rename it to .mjs, or write it with require() and module.exports');
    expect(moduleTypeAdvice(path.join(root, 'run.cts'), root)).toBe('A .cts file is CommonJS whatever a package.json says: rename it to .mts, or write it with require() and module.exports');
  });

  it('names the package.json in the plugin folder that makes it CommonJS', async () => {
    await writeFile(path.join(root, 'package.json'), JSON.stringify({ type: 'commonjs' }));
    expect(moduleTypeAdvice(path.join(root, 'run.ts'), root)).toBe(`Rename it to .mts, or make "type" "module" in ${path.join(root, 'package.json')}, the package.json nearest to it (it says "type": "commonjs")`);
  });

  it('looks up from a subfolder to the plugin folder, and never above it (a sandbox shows nothing there)', async () => {
    const plugin = path.join(root, 'plugin');
    await mkdir(path.join(plugin, 'lib'), { recursive: true });
    await mkdir(`${plugin}-other`, { recursive: true });
    await writeFile(path.join(`${plugin}-other`, 'package.json'), JSON.stringify({ type: 'module' }));
    // The root's package.json (the previous test's "commonjs") is above the plugin folder: not named.
    expect(moduleTypeAdvice(path.join(plugin, 'lib', 'run.js'), plugin)).toMatch(/in the plugin folder \(it has none/);
    expect(moduleTypeAdvice(path.join(`${plugin}-other`, 'run.js'), plugin)).toMatch(/in the plugin folder \(it has none/);
    await writeFile(path.join(plugin, 'package.json'), JSON.stringify({ type: 'module' }));
    const file = path.join(plugin, 'lib', 'run.js');
    expect(moduleTypeAdvice(pathToFileURL(file).href, plugin)).toContain(`in ${path.join(plugin, 'package.json')}, the package.json nearest to it (it says "type": "module")`);
    expect(mayLoadAsCommonJs(file, plugin)).toBe(false);
    expect(mayLoadAsCommonJs(path.join(plugin, 'lib', 'run.cjs'), plugin)).toBe(true);
    await writeFile(path.join(plugin, 'package.json'), JSON.stringify({ type: 'commonjs' }));
    expect(mayLoadAsCommonJs(file, plugin)).toBe(true);
    expect(mayLoadAsCommonJs(path.join(plugin, 'lib', 'run.mjs'), plugin)).toBe(false);
  });
});
