import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHostScript } from './node-host.js';

// In a plain Node process, as a host runs it (inside vitest, vitest's module runner would load
// the handler's module instead of Node, and accept ES module syntax in any file).
let dir: string;
let esmDir: string;
let typeless: string;

beforeAll(async () => {
  // The other way round: CommonJS code in a .js file under "type": "module" (the quick start's package.json).
  esmDir = await mkdtemp(path.join(os.tmpdir(), 'kb-esm-scope-'));
  await writeFile(path.join(esmDir, 'package.json'), JSON.stringify({ type: 'module' }));
  await writeFile(path.join(esmDir, 'kb.plugin.json'), JSON.stringify({ id: '@x/esm-scope', version: '1', handlers: { run: { entry: 'run.js' }, named: { entry: 'named.cjs' } } }));
  await writeFile(path.join(esmDir, 'run.js'), 'module.exports = async () => 1;\n');
  await writeFile(path.join(esmDir, 'named.cjs'), 'exports.build = async () => 1;\n');
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-cjs-scope-'));
  await writeFile(path.join(dir, 'package.json'), JSON.stringify({ type: 'commonjs' }));
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/cjs-scope', version: '1', handlers: { run: { entry: 'run.js' }, broken: { entry: 'broken.mjs' }, dependency: { entry: 'imports-failing.mjs' }, 'dependency-string': { entry: 'imports-string-thrower.mjs' }, json: { entry: 'imports-json.mjs' }, 'plain-misnamed': { entry: 'plain-misnamed.mjs' } } }));
  await writeFile(path.join(dir, 'imports-json.mjs'), "import data from './data.json';\nexport default async () => data;\n");
  await writeFile(path.join(dir, 'data.json'), '{ "a": 1 }\n');
  // A plain { run } object (no defineHandler) whose schema is under another name than input: a Standard Schema that refuses everything.
  await writeFile(path.join(dir, 'plain-misnamed.mjs'), "const refuses = { '~standard': { version: 1, vendor: 'x', validate: () => ({ issues: [{ message: 'refused' }] }) } };\nexport default { inputSchema: refuses, run: async (input) => input };\n");
  await writeFile(path.join(dir, 'run.js'), "import { helper } from './helper.js';\nexport default async () => helper();\n");
  await writeFile(path.join(dir, 'helper.js'), 'export const helper = () => 1;\n');
  await writeFile(path.join(dir, 'broken.mjs'), 'export default (input) => input +;\n');
  await writeFile(path.join(dir, 'imports-failing.mjs'), "import './fails-to-load.cjs';\nexport default async () => 1;\n");
  await writeFile(path.join(dir, 'fails-to-load.cjs'), "throw new Error('a dependency failed to load');\n");
  await writeFile(path.join(dir, 'imports-string-thrower.mjs'), "import './throws-a-string.cjs';\nexport default async () => 1;\n");
  await writeFile(path.join(dir, 'throws-a-string.cjs'), "throw 'a dependency threw a string';\n");
  // No package.json: a .js ES module Node 20.19+ takes for one by its syntax, exporting then.
  typeless = await mkdtemp(path.join(os.tmpdir(), 'kb-typeless-'));
  await writeFile(path.join(typeless, 'kb.plugin.json'), JSON.stringify({ id: '@x/typeless', version: '1', handlers: { run: { entry: 'run.js' } } }));
  await writeFile(path.join(typeless, 'run.js'), "export default async () => 'ran';\nexport function then(resolve) { resolve({ default: async () => 'hijacked' }); }\n");
});
afterAll(() => Promise.all([dir, esmDir, typeless].map((each) => rm(each, { recursive: true, force: true }))));

/** Run `handlerId` of the fixture plugin in a plain Node host; what the result says. */
function runInNode(handlerId: string, plugin = { dir, id: '@x/cjs-scope' }): { code: string; message: string; details: Record<string, unknown> } {
  const script = `
      import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
      const backend = new InProcessBackend({ plugins: [${JSON.stringify(plugin.dir)}], workspace: false });
      const r = await backend.execute({ pluginId: '${plugin.id}', handlerId: ${JSON.stringify(handlerId)} });
      // A turn later: what the load left to the process (a rejection nobody handled) has surfaced.
      await new Promise((resolve) => setTimeout(resolve, 20));
      console.log(JSON.stringify(r.ok ? { ok: true, data: r.data } : { code: r.error.code, message: r.error.message, details: r.error.details }));`;
  const result = runHostScript(script);
  expect(result.stderr).toBe('');
  return JSON.parse(result.stdout.trim()) as { code: string; message: string; details: Record<string, unknown> };
}

describe('in-process module loading, in a plain Node process', () => {
  it('refuses a plain { run } object whose schema is under another name than input (it ran every input unchecked), as defineHandler() does', () => {
    const printed = runInNode('plain-misnamed');
    expect(printed.code).toBe('HANDLER_ERROR');
    expect(printed.message).toContain('"inputSchema" holds a schema, which nothing uses: only the one named "input" validates the input');
    expect(printed.details).toMatchObject({ name: 'TypeError', file: path.join(dir, 'plain-misnamed.mjs') });
  });

  it('says so, naming the file, when a handler uses ES module syntax in a CommonJS scope', () => {
    const printed = runInNode('run');
    expect(printed.code).toBe('HANDLER_ERROR');
    expect(printed.message).toContain('uses ES module syntax (import/export) but Node loads it as CommonJS');
    expect(printed.details).toMatchObject({ name: 'SyntaxError', file: path.join(dir, 'run.js') });
  });

  it('says so, naming the file and the package.json that decides it, when a handler uses CommonJS in an ES module scope', () => {
    const printed = runInNode('run', { dir: esmDir, id: '@x/esm-scope' });
    expect(printed.code, printed.message).toBe('HANDLER_ERROR');
    // Before: "module is not defined in ES module scope … This file is being treated as an ES module", naming no file.
    expect(printed.message).toBe(
      `Handler "run" of plugin "@x/esm-scope": ${path.join(esmDir, 'run.js')} uses CommonJS (module) but Node loads it as an ES module. Rename it to .cjs, or write it with import and export (${path.join(esmDir, 'package.json')}, the package.json nearest to it, says "type": "module")`,
    );
    expect(printed.details).toMatchObject({ name: 'ReferenceError', file: path.join(esmDir, 'run.js') });
  });

  it('hints the "export" to set for a CommonJS module with one named export, as for an ES module', () => {
    const printed = runInNode('named', { dir: esmDir, id: '@x/esm-scope' });
    expect(printed.code).toBe('HANDLER_NOT_FOUND');
    expect(printed.message).toMatch(/; set "export": "build" on handler "named" in kb\.plugin\.json$/);
  });

  it("a JSON module imported without with { type: 'json' }: HANDLER_ERROR naming it, the handler's module and the fix", () => {
    const printed = runInNode('json');
    expect(printed.code, printed.message).toBe('HANDLER_ERROR');
    expect(printed.message).toBe(
      `Handler "json" of plugin "@x/cjs-scope": ${path.join(dir, 'data.json')} is a JSON module, imported (by ${path.join(dir, 'imports-json.mjs')} or a module it imports) without the import attribute Node requires of one. ` +
        "Import it as import data from './data.json' with { type: 'json' }",
    );
    expect(printed.details).toMatchObject({ name: 'TypeError', file: path.join(dir, 'data.json') });
  });

  // Node 20 also leaves the error as a rejection nobody handled (nodejs/node#51603), which ended the host.
  it('a handler module that imports a CommonJS module which throws as it loads: HANDLER_ERROR, and the host goes on', () => {
    const printed = runInNode('dependency');
    expect(printed.code, printed.message).toBe('HANDLER_ERROR');
    expect(printed.message).toContain('a dependency failed to load');
  });

  it('the same when the CommonJS module throws what is not an Error (a string)', () => {
    const printed = runInNode('dependency-string');
    expect(printed.code, printed.message).toBe('HANDLER_ERROR');
    expect(printed.message).toContain('a dependency threw a string');
  });

  it('a .js ES module with no package.json that also exports then has its default export called (Node 20 took it for CommonJS and imported it as a promise)', () => {
    const printed = runInNode('run', { dir: typeless, id: '@x/typeless' });
    expect(printed).toEqual({ ok: true, data: 'ran' });
  });

  it('a plugin folder with a backslash in its path, from which Node imports no module, is refused when it is loaded, saying why', async () => {
    const backslash = path.join(typeless, 'back\\slash');
    await mkdir(backslash);
    await writeFile(path.join(backslash, 'kb.plugin.json'), JSON.stringify({ id: '@x/backslash', version: '1', handlers: { run: { entry: 'run.mjs' } } }));
    await writeFile(path.join(backslash, 'run.mjs'), 'export default async () => 1;\n');
    // Before: registered, and every execution a VALIDATION_ERROR ("… has a backslash in its path").
    const printed = runInNode('run', { dir: backslash, id: '@x/backslash' });
    expect(printed.code).toBe('HANDLER_NOT_FOUND');
    expect(printed.message).toContain(`plugins[0]: Plugin folder ${backslash} cannot be loaded:\n  - root: has a "\\" in its path, and Node imports no module from such a path: move the plugin to a folder without one`);
  });

  // Node 22.18+ runs a .ts entry by stripping its types, and refuses what it cannot strip (an enum)
  // with a SyntaxError whose stack begins with the file and line: its URL, in an ES module scope.
  it.runIf((process.features as { typescript?: unknown }).typescript === 'strip')('names a TypeScript file that does not strip by its path and line, as for a module that does not parse', async () => {
    const ts = path.join(typeless, 'ts');
    await mkdir(ts);
    await writeFile(path.join(ts, 'kb.plugin.json'), JSON.stringify({ id: '@x/ts', version: '1', handlers: { run: { entry: 'run.ts' } } }));
    await writeFile(path.join(ts, 'package.json'), JSON.stringify({ type: 'module' }));
    await writeFile(path.join(ts, 'run.ts'), 'const offset: number = 1;\n\nenum Color { Red, Green }\nexport default async (): Promise<number> => Color.Green + offset;\n');
    const printed = runInNode('run', { dir: ts, id: '@x/ts' });
    expect(printed.code).toBe('HANDLER_ERROR');
    // Before: "file:///…/run.ts:3 does not parse", and details.file the URL where every other load error has the path.
    expect(printed.message).toMatch(new RegExp(`^Handler "run" of plugin "@x/ts": ${path.join(ts, 'run.ts').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3 does not parse: SyntaxError: `));
    expect(printed.details).toEqual({ name: 'SyntaxError', file: path.join(ts, 'run.ts') });
  });

  it('names the file of a handler module that does not parse', () => {
    const printed = runInNode('broken');
    expect(printed.code).toBe('HANDLER_ERROR');
    expect(printed.message).toContain(`${path.join(dir, 'broken.mjs')} (or a module it imports) does not parse: SyntaxError: `);
    expect(printed.details).toMatchObject({ name: 'SyntaxError', file: path.join(dir, 'broken.mjs') });
  });

  it("says how to find the line of an ES module that does not parse, which Node's error does not give", () => {
    const printed = runInNode('broken');
    // Before: only "… does not parse: SyntaxError: Unexpected token ';'", no line to go to.
    expect(printed.message).toMatch(new RegExp(`does not parse: SyntaxError: .+ \\(Node names no line for an ES module: node --check <file> shows where, in ${path.join(dir, 'broken.mjs').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} or a module it imports\\)$`));
  });
});
