import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RunnerSession, type RunnerResult, type RunnerTask } from '../src/backend-kit.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let root: string;

/** The error of running the default export of `file` (relative to the plugin folder), written as `source`. */
async function loadFailure(file: string, source: string): Promise<{ code: unknown; message: unknown }> {
  const entryPath = path.join(root, file);
  await writeFile(entryPath, source);
  const task: RunnerTask = {
    executionId: `exec-${file}`, pluginId: '@t/load', handlerId: 'run', pluginRoot: root, entryPath, exportName: 'default',
    input: undefined, context: {}, workspaceDir: undefined, permissions: {}, timeoutMs: 10_000, memoryMb: undefined,
  };
  const result = (await new RunnerSession(task, () => undefined).run()) as RunnerResult & { ok: false; error: { code: unknown; message: unknown } };
  expect(result.ok).toBe(false);
  return { code: result.error.code, message: result.error.message };
}

describe("a handler's module that fails to load, in terms its author can act on", () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-load-errors-'));
    await mkdir(path.join(root, 'handlers'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('a CommonJS module that does not parse: HANDLER_ERROR naming its file and line (its stack starts with them, in the plugin folder)', async () => {
    const failure = await loadFailure('bad.cjs', 'module.exports = async () => {\n  return 1 +;\n};\n');
    expect(failure).toEqual({ code: 'HANDLER_ERROR', message: `Handler "run" of plugin "@t/load": ${path.join(root, 'bad.cjs')}:2 does not parse: SyntaxError: Unexpected token ';'` });
  });

  it('a JSON module imported from a folder above without its import attribute: the fix names it as the import does (../, not ./../)', async () => {
    await writeFile(path.join(root, 'data.json'), '{"a":1}\n');
    const failure = await loadFailure(path.join('handlers', 'json.mjs'), "import data from '../data.json';\nexport default () => data;\n");
    expect(failure.code).toBe('HANDLER_ERROR');
    expect(failure.message).toMatch(/ Import it as import data from '\.\.\/data\.json' with \{ type: 'json' \}$/);
  });

  it('CommonJS in a module the handler imports, in an ES module scope: HANDLER_ERROR naming that module, not the handler\'s', async () => {
    const scope = path.join(root, 'esm-scope');
    await mkdir(scope);
    await writeFile(path.join(scope, 'package.json'), '{ "type": "module" }\n');
    await writeFile(path.join(scope, 'lib.js'), 'module.exports = { answer: 42 };\n');
    const failure = await loadFailure(path.join('esm-scope', 'entry.js'), "import './lib.js';\nexport default () => 1;\n");
    expect(failure.code).toBe('HANDLER_ERROR');
    expect(failure.message).toContain(`Handler "run" of plugin "@t/load": ${path.join(scope, 'lib.js')} uses CommonJS (module) but Node loads it as an ES module. `);
  });
});
