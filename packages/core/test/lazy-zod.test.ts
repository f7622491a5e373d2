/**
 * Which zod core loads (host/lazy-zod.ts), seen from real host processes: the instance the host's
 * own import or require of zod gets (one copy of zod in the host), and the CommonJS build where
 * Node will not require() an ES module.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const coreRoot = fileURLToPath(new URL('..', import.meta.url));

/** Run `script` in a Node of its own from core's folder (where `zod` resolves); its stdout. */
function run(args: string[], script: string): string {
  const child = spawnSync(process.execPath, [...args, '-e', script], { cwd: coreRoot, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 });
  expect(child.stderr).toBe('');
  return child.stdout;
}

describe('the zod core validates with', () => {
  it("is the one an ES host's import 'zod' gets, and a CommonJS host's require('zod')", () => {
    const esm = `const { lazySchema } = await import(${JSON.stringify(new URL('../dist/host-kit.js', import.meta.url).href)});
const { z } = await import('zod');
const core = lazySchema((zod) => zod)();
console.log(core === z, lazySchema((zod) => zod.string())().parse('ok'));`;
    expect(run(['--input-type=module'], esm)).toBe('true ok\n');
    const cjs = `const { lazySchema } = require(${JSON.stringify(fileURLToPath(new URL('../dist/host-kit.cjs', import.meta.url)))});
console.log(lazySchema((zod) => zod)() === require('zod').z);`;
    expect(run(['--input-type=commonjs'], cjs)).toBe('true\n');
  });

  it('is zod\'s CommonJS build in an ES host whose Node will not require() an ES module (--no-experimental-require-module): it validates', () => {
    const esm = `import { createRequire } from 'node:module';
const { lazySchema } = await import(${JSON.stringify(new URL('../dist/host-kit.js', import.meta.url).href)});
const core = lazySchema((zod) => zod)();
console.log(core === createRequire(${JSON.stringify(new URL('../package.json', import.meta.url).href)})('zod').z, lazySchema((zod) => zod.string())().parse('ok'));`;
    expect(run(['--no-experimental-require-module', '--input-type=module'], esm)).toBe('true ok\n');
  });
});
