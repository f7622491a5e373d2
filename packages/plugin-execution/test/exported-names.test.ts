import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

// The built packages (dist/), as a host loads them: a class the bundler renamed (a class that
// names itself inside its body becomes `class _ExecutionError`, one whose name another module
// bundled beside it took becomes `WorkerCrashedError2`) carries that name into every error's
// `name`, `String(error)`, the wire form and logs.
const packagesDir = path.resolve(__dirname, '../..');
const PACKAGES = ['core', 'in-process', 'worker-pool', 'subprocess', 'queue', 'channels', 'plugin-execution'];
const require = createRequire(import.meta.url);

interface Entry {
  pkg: string;
  subpath: string;
  esm: string;
  cjs: string;
}

function codeEntries(): Entry[] {
  const entries: Entry[] = [];
  for (const pkg of PACKAGES) {
    const dir = path.join(packagesDir, pkg);
    const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
    for (const [subpath, target] of Object.entries(manifest.exports)) {
      const forms = target as { import?: { default?: string }; require?: { default?: string } };
      if (typeof forms !== 'object' || !forms.import?.default || !forms.require?.default) continue;
      entries.push({ pkg, subpath, esm: path.join(dir, forms.import.default), cjs: path.join(dir, forms.require.default) });
    }
  }
  return entries;
}

/** Exported classes (functions named in PascalCase) whose own name is not the name they are exported as. */
function misnamed(exports: Record<string, unknown>): string[] {
  return Object.entries(exports)
    .filter(([key, value]) => typeof value === 'function' && /^[A-Z]/.test(key) && value.name !== key)
    .map(([key, value]) => `${key} is named ${(value as { name: string }).name}`);
}

describe('exported classes keep their names in the builds', () => {
  const entries = codeEntries();

  it('finds the entry points of every package', () => {
    expect(entries.map((e) => `${e.pkg}${e.subpath.slice(1)}`)).toEqual(expect.arrayContaining(['core', 'core/backend-kit', 'core/runner', 'subprocess', 'queue', 'plugin-execution']));
  });

  it.each(entries.map((e) => [`${e.pkg} ${e.subpath}`, e] as const))('%s: ES module and CommonJS builds', async (_label, entry) => {
    const esm = (await import(pathToFileURL(entry.esm).href)) as Record<string, unknown>;
    const cjs = require(entry.cjs) as Record<string, unknown>;
    expect(misnamed(esm)).toEqual([]);
    expect(misnamed(cjs)).toEqual([]);
  });

  it('an error of the base class is named ExecutionError, as its wire form and String() say', async () => {
    const core = (await import(pathToFileURL(path.join(packagesDir, 'core/dist/index.js')).href)) as typeof import('@kb-labs/plugin-execution-core');
    const error = new core.ExecutionError('A_NEWER_CODE', 'from a newer worker');
    expect(error.name).toBe('ExecutionError');
    expect(String(error)).toBe('ExecutionError: from a newer worker');
    expect(core.serializeError(error).name).toBe('ExecutionError');
    expect(core.deserializeError(core.serializeError(error)).name).toBe('ExecutionError');
    expect(new core.TimeoutError('late', { details: { timeoutMs: 1 } }).name).toBe('TimeoutError');
  });

  it("the subprocess backend's host build imports core's runner, not a copy of it (one family of error classes)", () => {
    for (const file of ['index.js', 'index.cjs']) {
      const code = readFileSync(path.join(packagesDir, 'subprocess/dist', file), 'utf8');
      expect(code, file).toContain('@kb-labs/plugin-execution-core/runner');
      expect(code, file).not.toMatch(/errorClass\(/);
    }
  });
});
