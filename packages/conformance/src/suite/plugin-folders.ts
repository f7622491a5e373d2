import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { expectError, expectOk } from '../expect-result.js';
import { BASIC, fixturePlugins } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';

/** Runs `test` in a fresh folder under the OS's temporary folder (`prefix`), removed afterwards whatever happens. */
async function inFreshFolder(prefix: string, test: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  try {
    await test(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Plugin folders that cannot be loaded, or whose modules Node cannot load as written. */
export function pluginFolderTests(suite: SuiteContext): void {
  const { make } = suite;
  it('reports a bad plugin folder as VALIDATION_ERROR on its executions and in health(), and keeps serving the good ones', () =>
    inFreshFolder('kb-bad-plugin-', async (dir) => {
      const unreadable = path.join(dir, 'no-such-folder');
      await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/bad', version: '1', handlers: { run: { entry: 42 } } }));
      const backend = make({ plugins: [fixturePlugins.basic, dir, unreadable] });
      const result = await backend.execute({ pluginId: '@x/bad', handlerId: 'run' });
      expectError(result, 'VALIDATION_ERROR');
      expect(result.error.message).toContain('handlers.run.entry');
      // One bad folder does not fail the good plugin beside it.
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
      // A plugin nobody registered is not found, and the message says which sources failed to load.
      const unknown = await backend.execute({ pluginId: '@x/elsewhere', handlerId: 'run' });
      expectError(unknown, 'HANDLER_NOT_FOUND');
      expect(unknown.error.message).toContain('plugins[2]');
      const health = await backend.health();
      expect(health.ok).toBe(false);
      expect(health.problems.join('\n')).toMatch(/plugins\[1\] failed to load: [\s\S]*handlers\.run\.entry/);
      expect(health.problems.join('\n')).toMatch(/plugins\[2\] failed to load: Plugin folder \S+no-such-folder does not exist/);
    }));

  it.runIf(suite.capabilities.loadsModulesWithNode !== false && suite.capabilities.runsHostPlugins !== false)('says so, naming the file, when a handler uses ES module syntax in a CommonJS scope', () =>
    inFreshFolder('kb-cjs-scope-', async (dir) => {
      await writeFile(path.join(dir, 'package.json'), JSON.stringify({ type: 'commonjs' }));
      await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/cjs-scope', version: '1', handlers: { run: { entry: 'run.js' } } }));
      await writeFile(path.join(dir, 'run.js'), "import { helper } from './helper.js';\nexport default async () => helper();\n");
      await writeFile(path.join(dir, 'helper.js'), 'export const helper = () => 1;\n');
      const backend = make({ plugins: [dir] });
      const result = await backend.execute({ pluginId: '@x/cjs-scope', handlerId: 'run' });
      expectError(result, 'HANDLER_ERROR');
      expect(result.error.message).toContain('uses ES module syntax (import/export) but Node loads it as CommonJS');
      expect(result.error.message).toContain(path.join(dir, 'run.js'));
      expect(result.error.details).toMatchObject({ name: 'SyntaxError', file: path.join(dir, 'run.js') });
    }));

  it.runIf(suite.capabilities.loadsModulesWithNode !== false && suite.capabilities.runsHostPlugins !== false)('runs a TypeScript handler where Node strips types, and elsewhere says to build it', () =>
    inFreshFolder('kb-ts-entry-', async (dir) => {
      await mkdir(path.join(dir, 'src'));
      await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/ts-entry', version: '1', handlers: { run: { entry: 'src/run.ts' } } }));
      await writeFile(path.join(dir, 'src', 'run.ts'), 'export default async function run(input: number): Promise<number> {\n  return input * 2;\n}\n');
      const backend = make({ plugins: [dir] });
      const result = await backend.execute({ pluginId: '@x/ts-entry', handlerId: 'run', input: 21 });
      if ((process.features as { typescript?: unknown }).typescript) {
        expectOk(result);
        expect(result.data).toBe(42);
      } else {
        expectError(result, 'HANDLER_ERROR');
        expect(result.error.message).toContain(`${path.join(dir, 'src', 'run.ts')} is TypeScript, which Node ${process.version} does not run. Build the plugin to JavaScript`);
      }
    }));

  it.runIf(suite.capabilities.loadsModulesWithNode !== false && suite.capabilities.runsHostPlugins !== false)('names the file of a handler module that does not parse', () =>
    inFreshFolder('kb-no-parse-', async (dir) => {
      await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/no-parse', version: '1', handlers: { esm: { entry: 'esm.mjs' }, cjs: { entry: 'cjs.cjs' }, json: { entry: 'json.mjs' } } }));
      await writeFile(path.join(dir, 'esm.mjs'), 'export default (input) => input +;\n');
      await writeFile(path.join(dir, 'cjs.cjs'), 'module.exports = (input) => {\n  return input +;\n};\n');
      // A SyntaxError the module's own code throws as it loads is the handler's, as it is.
      await writeFile(path.join(dir, 'json.mjs'), "const config = JSON.parse('{nope');\nexport default () => config;\n");
      const backend = make({ plugins: [dir] });
      const esm = await backend.execute({ pluginId: '@x/no-parse', handlerId: 'esm' });
      expectError(esm, 'HANDLER_ERROR');
      expect(esm.error.message).toContain(`${path.join(dir, 'esm.mjs')} (or a module it imports) does not parse: SyntaxError: `);
      expect(esm.error.details).toMatchObject({ name: 'SyntaxError', file: path.join(dir, 'esm.mjs') });
      const cjs = await backend.execute({ pluginId: '@x/no-parse', handlerId: 'cjs' });
      expectError(cjs, 'HANDLER_ERROR');
      expect(cjs.error.message).toContain(`${path.join(dir, 'cjs.cjs')}:2 does not parse: SyntaxError: `);
      const json = await backend.execute({ pluginId: '@x/no-parse', handlerId: 'json' });
      expectError(json, 'HANDLER_ERROR');
      expect(json.error.message).not.toContain('does not parse');
      expect(json.error.details).toMatchObject({ name: 'SyntaxError' });
    }));

  it.runIf(suite.capabilities.loadsModulesWithNode !== false && suite.capabilities.runsHostPlugins !== false)("a JSON module imported without with { type: 'json' } is HANDLER_ERROR naming it, the handler's module and the fix", () =>
    inFreshFolder('kb-json-import-', async (dir) => {
      await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/json-import', version: '1', handlers: { run: { entry: 'handlers/run.mjs' } } }));
      await mkdir(path.join(dir, 'handlers'));
      await writeFile(path.join(dir, 'config.json'), '{ "greeting": "hi" }\n');
      await writeFile(path.join(dir, 'handlers', 'run.mjs'), "import config from '../config.json';\nexport default async () => config.greeting;\n");
      const result = await make({ plugins: [dir] }).execute({ pluginId: '@x/json-import', handlerId: 'run' });
      expectError(result, 'HANDLER_ERROR');
      // Before: Node's own 'Module "file:///…/config.json" needs an import attribute of "type: json"', naming neither the importer nor the fix.
      expect(result.error.message).toBe(
        `Handler "run" of plugin "@x/json-import": ${path.join(dir, 'config.json')} is a JSON module, imported (by ${path.join(dir, 'handlers', 'run.mjs')} or a module it imports) without the import attribute Node requires of one. ` +
          "Import it as import data from '../config.json' with { type: 'json' }",
      );
      expect(result.error.details).toMatchObject({ name: 'TypeError', file: path.join(dir, 'config.json') });
    }));

  it.runIf(suite.capabilities.loadsModulesWithNode !== false && suite.capabilities.runsHostPlugins !== false)('an empty handler module (a save caught half-way) is HANDLER_ERROR saying so, not HANDLER_NOT_FOUND', () =>
    inFreshFolder('kb-empty-module-', async (dir) => {
      await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/empty', version: '1', handlers: { esm: { entry: 'esm.mjs' }, cjs: { entry: 'cjs.cjs' } } }));
      await writeFile(path.join(dir, 'esm.mjs'), '');
      await writeFile(path.join(dir, 'cjs.cjs'), '');
      await chmod(dir, 0o755);
      const backend = make({ plugins: [dir] });
      for (const handlerId of ['esm', 'cjs']) {
        const result = await backend.execute({ pluginId: '@x/empty', handlerId });
        expectError(result, 'HANDLER_ERROR');
        expect(result.error.message).toContain(`${path.join(dir, `${handlerId}.${handlerId === 'esm' ? 'mjs' : 'cjs'}`)} is empty`);
      }
    }));

  it.runIf(suite.capabilities.runsHostPlugins !== false)('a bound class or a Proxy of a class exported as a handler is HANDLER_NOT_FOUND naming the file and export, as a class is', () =>
    inFreshFolder('kb-hidden-class-', async (dir) => {
      // Before: HANDLER_ERROR "Class constructor Handler cannot be invoked without 'new'", naming no file or export.
      await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/classes', version: '1', handlers: { bound: { entry: 'bound.mjs' }, proxied: { entry: 'proxied.cjs' } } }));
      await writeFile(path.join(dir, 'bound.mjs'), 'class Handler { async run() { return 1; } }\nexport default Handler.bind(null);\n');
      await writeFile(path.join(dir, 'proxied.cjs'), 'class Handler { async run() { return 1; } }\nmodule.exports = new Proxy(Handler, {});\n');
      await chmod(dir, 0o755);
      const backend = make({ plugins: [dir] });
      for (const [handlerId, file, kind] of [['bound', 'bound.mjs', 'a bound class'], ['proxied', 'proxied.cjs', 'a Proxy of a class']] as const) {
        const result = await backend.execute({ pluginId: '@x/classes', handlerId });
        expectError(result, 'HANDLER_NOT_FOUND');
        expect(result.error.message).toBe(
          `Handler "${handlerId}" of plugin "@x/classes": export "default" of ${path.join(dir, file)} is ${kind} (Handler), which cannot be called without new: export a function that calls it, such as (input, ctx) => new Handler().run(input, ctx)`,
        );
      }
    }));
}
