import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Importing the umbrella loads neither zod nor ws (issue 15: they were most of its import time):
// zod loads when something is first validated, ws when channels are first mounted. Real child
// processes, no timing; docs/benchmarks.md#start-up has the figures.
const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, 'fixtures');
const heavy = /[\\/]node_modules[\\/](zod|ws)[\\/]/;

function run(args: string[]) {
  const result = spawnSync(process.execPath, args, { cwd: path.resolve(here, '..'), env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 30_000 });
  expect(result.status, result.stderr).toBe(0);
  return { out: JSON.parse(result.stdout) as { atImport: string[]; afterUse: string[]; kitsAtImport?: string[]; v8AtImport: boolean; v8AfterUse: boolean }, stderr: result.stderr };
}

const names = (files: string[]) => [...new Set(files.map((file) => heavy.exec(file)?.[1]))].sort();

describe("importing the umbrella loads neither zod, ws nor core's backend kit", () => {
  it('ES build: nothing of them is resolved or required until a schema and a mount are used', () => {
    const { out, stderr } = run(['--import', path.join(fixtures, 'register-resolve-logger.mjs'), path.join(fixtures, 'zod-ws-loading.mjs')]);
    const resolvedAtImport = stderr.split('IMPORTED\n')[0]!.split('\n').filter((line) => line.startsWith('RESOLVED '));
    expect(resolvedAtImport.some((line) => line.includes('plugin-execution/dist/index.js'))).toBe(true);
    expect(resolvedAtImport.filter((line) => heavy.test(line))).toEqual([]);
    // Nor core's backend kit: channels and the umbrella take what they need from the host kit.
    expect(resolvedAtImport.some((line) => line.includes('core/dist/host-kit.js'))).toBe(true);
    expect(resolvedAtImport.filter((line) => line.includes('backend-kit'))).toEqual([]);
    // Of Node's built-ins, only node:path (and the fixture's own two): the others are taken with
    // process.getBuiltinModule, as an ES import builds a facade of each at start-up (node:net, which
    // channels imported for an instanceof, put the umbrella's ES start-up from 1.58 to 1.67 × node -e 0).
    expect(resolvedAtImport.filter((line) => line.startsWith('RESOLVED node:')).map((line) => line.slice('RESOLVED '.length)).sort()).toEqual(['node:http', 'node:module', 'node:path']);
    expect(out.atImport).toEqual([]);
    expect(names(out.afterUse)).toEqual(['ws', 'zod']);
    // Nor node:v8, which loads Node's streams (true once the fixture takes it itself).
    expect([out.v8AtImport, out.v8AfterUse]).toEqual([false, true]);
  });

  it('CommonJS build: neither is in require.cache until a schema and a mount are used', () => {
    const { out } = run([path.join(fixtures, 'zod-ws-loading.cjs')]);
    expect(out.atImport).toEqual([]);
    expect(out.kitsAtImport).toEqual(['host-kit.cjs']);
    expect(names(out.afterUse)).toEqual(['ws', 'zod']);
    expect([out.v8AtImport, out.v8AfterUse]).toEqual([false, true]);
  });
});
