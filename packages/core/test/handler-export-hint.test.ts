import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RunnerSession, type RunnerResult, type RunnerTask } from '../src/backend-kit.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let root: string;

/** A task of plugin "@t/hint" running export `exportName` (default "default") of `entryPath` as handler `handlerId`. */
function hintTask(executionId: string, entryPath: string, handlerId: string, more: Partial<Pick<RunnerTask, 'exportName' | 'input' | 'context'>> = {}): RunnerTask {
  return { executionId, pluginId: '@t/hint', handlerId, pluginRoot: root, entryPath, exportName: 'default', input: undefined, context: {}, workspaceDir: undefined, permissions: {}, timeoutMs: 10_000, memoryMb: undefined, ...more };
}

/** The message of the result of running handler `handlerId` (export `exportName`) of a module whose source is `source`. */
async function failureOf(file: string, source: string, handlerId: string, exportName = 'default'): Promise<{ code: unknown; message: unknown }> {
  const entryPath = path.join(root, file);
  await writeFile(entryPath, source);
  const task = hintTask(`exec-${file}`, entryPath, handlerId, { exportName, context: { host: { kind: 'test' } } });
  const result = (await new RunnerSession(task, () => undefined).run()) as RunnerResult & { ok: false; error: { code: unknown; message: unknown } };
  expect(result.ok).toBe(false);
  return { code: result.error.code, message: result.error.message };
}

describe('a handler export that is not there', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-export-hint-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('names the "export" to set when the module has one export only', async () => {
    const failure = await failureOf('only.mjs', 'export async function hello() { return 1; }\n', 'hello');
    expect(failure).toEqual({
      code: 'HANDLER_NOT_FOUND',
      message: `Handler "hello" of plugin "@t/hint": ${path.join(root, 'only.mjs')} has no export "default" (exports: hello); set "export": "hello" on handler "hello" in kb.plugin.json`,
    });
    // One export of another name than the handler's is still the one meant.
    expect((await failureOf('other.mjs', 'export const run = async () => 1;\n', 'greet')).message).toMatch(/\(exports: run\); set "export": "run" on handler "greet" in kb\.plugin\.json$/);
  });

  it('names the export called as the handler among several', async () => {
    const failure = await failureOf('many.mjs', 'export const helper = () => 0;\nexport async function greet() { return 1; }\n', 'greet', 'build');
    // (The order of the exports listed is the loader's.)
    expect(failure.message).toMatch(/^Handler "greet" of plugin "@t\/hint": \S+many\.mjs has no export "build" \(exports: (greet, helper|helper, greet)\); set "export": "greet" on handler "greet" in kb\.plugin\.json$/);
  });

  it('lists the handlers to choose from when none is named as the handler, and gives no hint when it is no handler', async () => {
    const several = await failureOf('several.mjs', 'export const a = () => 0;\nexport const b = () => 0;\nexport const c = 1;\n', 'greet');
    expect(several.message).toMatch(/has no export "default" \(exports: a, b, c\); set "export" on handler "greet" in kb\.plugin\.json to the one it runs: "a", "b"$/);
    const object = await failureOf('object.mjs', 'export default { a: () => 0, b: () => 0 };\n', 'greet');
    expect(object.message).toMatch(/got an object of several functions \(a, b\), not one handler\); set "export" on handler "greet" in kb\.plugin\.json to the one it runs: "a", "b"$/);
    const notFunction = await failureOf('value.mjs', 'export const greeting = "hi";\n', 'greet');
    expect(notFunction.message).toMatch(/has no export "default" \(exports: greeting\)$/);
    const none = await failureOf('none.mjs', 'const x = 1;\nexport {};\n', 'greet');
    expect(none.message).toMatch(/has no export "default" \(exports: none\)$/);
  });

  it('never hints an export name kb.plugin.json\'s "export" refuses (a string export such as "my-handler"): it says to export the handler under a name it takes', async () => {
    // Before: 'set "export": "my-handler"', which loading the manifest then refused ("must be an export name").
    const only = await failureOf('string-name.mjs', 'const h = async () => 1;\nexport { h as "my-handler" };\n', 'my-handler');
    expect(only.message).toMatch(/\(exports: my-handler\); "export" in kb\.plugin\.json takes a name such as "run", not "my-handler": export the handler under one too \(export \{ handler as run \}\)$/);
    const mixed = await failureOf('mixed-names.mjs', 'const h = async () => 1;\nexport { h as "my-handler", h as myHandler };\n', 'my-handler');
    expect(mixed.message).toMatch(/; set "export": "myHandler" on handler "my-handler" in kb\.plugin\.json$/);
  });

  it("an object of several functions (a CommonJS module's exports, an ESM default object) is not taken for the handler its `run` is: the one named after the handler is hinted", async () => {
    const cjs = await failureOf('multi.cjs', 'exports.run = async () => "I am run";\nexports.build = async () => "I am build";\n', 'build');
    expect(cjs).toEqual({
      code: 'HANDLER_NOT_FOUND',
      message: `Handler "build" of plugin "@t/hint": export "default" of ${path.join(root, 'multi.cjs')} is not a handler (a function or defineHandler({ run }) was expected, got an object of several functions (run, build), not one handler); set "export": "build" on handler "build" in kb.plugin.json`,
    });
    const esm = await failureOf('multi.mjs', 'const run = async () => 1;\nconst lint = async () => 2;\nexport default { run, lint };\n', 'lint');
    expect(esm.message).toMatch(/got an object of several functions \(run, lint\), not one handler\); set "export": "lint" on handler "lint" in kb\.plugin\.json$/);
    // An ES module's default object of one function: the hint a CommonJS module's gets.
    const one = await failureOf('one.mjs', 'export default { build: async () => "built" };\n', 'one');
    expect(one.message).toMatch(/got object\); set "export": "build" on handler "one" in kb\.plugin\.json$/);
    // What the hint says works: the default object's own property.
    const entryPath = path.join(root, 'multi.mjs');
    const task = hintTask('exec-lint', entryPath, 'lint', { exportName: 'lint' });
    expect(await new RunnerSession(task, () => undefined).run()).toMatchObject({ ok: true, data: 2 });
  });

  it('a plain { input, run } object (not made by defineHandler) is still a handler', async () => {
    const entryPath = path.join(root, 'plain.mjs');
    await writeFile(entryPath, 'export default { input: { safeParse: (v) => ({ success: true, data: v }) }, run: async (input) => ({ got: input }) };\n');
    const task = hintTask('exec-plain', entryPath, 'plain', { input: 3 });
    expect(await new RunnerSession(task, () => undefined).run()).toMatchObject({ ok: true, data: { got: 3 } });
  });

  it('a class exported as the handler is HANDLER_NOT_FOUND naming the file, the export and the class, not a TypeError from inside the runner', async () => {
    // Before: HANDLER_ERROR "Class constructor Handler cannot be invoked without 'new'", its stack
    // only the runner's frames, on every backend: nothing said which file or export.
    const esm = await failureOf('klass.mjs', 'export default class Handler { async run() { return 1; } }\n', 'greet');
    expect(esm).toEqual({
      code: 'HANDLER_NOT_FOUND',
      message:
        `Handler "greet" of plugin "@t/hint": export "default" of ${path.join(root, 'klass.mjs')} is a class (Handler), which cannot be called without new: ` +
        'export a function that calls it, such as (input, ctx) => new Handler().run(input, ctx)',
    });
    const cjs = await failureOf('klass.cjs', 'module.exports = class extends Object {};\n', 'greet');
    expect(cjs).toMatchObject({ code: 'HANDLER_NOT_FOUND', message: expect.stringContaining(`export "default" of ${path.join(root, 'klass.cjs')} is a class (anonymous), which cannot be called without new`) });
    // A function that is no class is called as before, whatever its source says.
    const entryPath = path.join(root, 'fn.mjs');
    await writeFile(entryPath, 'export default async function classy() { return "class"; }\n');
    const task = hintTask('exec-fn', entryPath, 'fn');
    expect(await new RunnerSession(task, () => undefined).run()).toMatchObject({ ok: true, data: 'class' });
  });

  it('a bound class or a Proxy of a class exported as the handler is HANDLER_NOT_FOUND naming the file, the export and the class, as a plain class is', async () => {
    // Before: HANDLER_ERROR "Class constructor Handler cannot be invoked without 'new'" (V8's, from
    // the call): their source reads "function () { [native code] }", so the class check missed them.
    const hint = (file: string, kind: string, name: string, call: string) =>
      `Handler "greet" of plugin "@t/hint": export "default" of ${path.join(root, file)} is ${kind} (${name}), which cannot be called without new: export a function that calls it, such as (input, ctx) => ${call}.run(input, ctx)`;
    const bound = await failureOf('bound.mjs', 'class Handler { async run() { return 1; } }\nexport default Handler.bind(null);\n', 'greet');
    expect(bound).toEqual({ code: 'HANDLER_NOT_FOUND', message: hint('bound.mjs', 'a bound class', 'Handler', 'new Handler()') });
    const twice = await failureOf('bound-twice.cjs', 'module.exports = (class {}).bind(null).bind(null);\n', 'greet');
    expect(twice).toEqual({ code: 'HANDLER_NOT_FOUND', message: hint('bound-twice.cjs', 'a bound class', 'anonymous', 'new Handler()') });
    const proxied = await failureOf('proxied.mjs', 'class Handler { static async run() { return 1; } }\nexport default new Proxy(Handler, {});\n', 'greet');
    expect(proxied).toEqual({ code: 'HANDLER_NOT_FOUND', message: hint('proxied.mjs', 'a Proxy of a class', 'Handler', 'Handler') });
    // What a bound function's own code throws is the handler's, the same TypeError included.
    const inner = await failureOf('bound-fn.mjs', 'class Other {}\nfunction handler() { return Other(); }\nexport default handler.bind(null);\n', 'greet');
    expect(inner).toEqual({ code: 'HANDLER_ERROR', message: "Class constructor Other cannot be invoked without 'new'" });
    const thrownHere = await failureOf('proxy-throws.mjs', "class Handler {}\nexport default new Proxy(Handler, { apply() { throw new TypeError(\"Class constructor Other cannot be invoked without 'new'\"); } });\n", 'greet');
    expect(thrownHere.code).toBe('HANDLER_ERROR');
    // A bound function and a Proxy of one are called as before.
    const entryPath = path.join(root, 'bound-ok.mjs');
    await writeFile(entryPath, 'export default new Proxy(async function (input) { return [this?.tag, input]; }.bind({ tag: "bound" }), {});\n');
    const task = hintTask('exec-bound-ok', entryPath, 'ok', { input: 2 });
    expect(await new RunnerSession(task, () => undefined).run()).toMatchObject({ ok: true, data: ['bound', 2] });
  });

  it("a bound class run for two handler ids of one file names the id run, not the first one's", async () => {
    // Before: the second said 'Handler "first"' (and details.handlerId "first"): the refusal was made
    // when the export was loaded, for the task that loaded it, and the loaded export is shared by
    // every handler id of its file and export.
    const source = 'class Handler { async run() { return 1; } }\nexport default Handler.bind(null);\n';
    const first = await failureOf('bound-shared.mjs', source, 'first');
    expect(first.message).toMatch(/^Handler "first" of plugin "@t\/hint": export "default" of \S+bound-shared\.mjs is a bound class \(Handler\)/);
    const entryPath = path.join(root, 'bound-shared.mjs');
    const task = hintTask('exec-bound-second', entryPath, 'second');
    const second = (await new RunnerSession(task, () => undefined).run()) as RunnerResult & { ok: false; error: { code: unknown; message: string; details: Record<string, unknown> } };
    expect(second.ok).toBe(false);
    expect(second.error.code).toBe('HANDLER_NOT_FOUND');
    expect(second.error.message).toMatch(/^Handler "second" of plugin "@t\/hint": export "default" of \S+bound-shared\.mjs is a bound class \(Handler\)/);
    expect(second.error.details).toMatchObject({ handlerId: 'second', export: 'default' });
  });

  it('a class whose run is static is told to call that run, not an instance\'s', async () => {
    // Before: "such as (input, ctx) => new Handler().run(input, ctx)", which throws "run is not a function": an instance has no static run.
    const statics = await failureOf('static-run.mjs', 'export default class Handler { static async run(input) { return input; } }\n', 'greet');
    expect(statics).toEqual({
      code: 'HANDLER_NOT_FOUND',
      message:
        `Handler "greet" of plugin "@t/hint": export "default" of ${path.join(root, 'static-run.mjs')} is a class (Handler), which cannot be called without new: ` +
        'export a function that calls it, such as (input, ctx) => Handler.run(input, ctx)',
    });
    // A static getter named run is not called to find out: the usual hint.
    const getter = await failureOf('static-getter.mjs', "export default class Handler { static get run() { throw new Error('ran'); } }\n", 'greet');
    expect(getter.message).toContain('such as (input, ctx) => new Handler().run(input, ctx)');
  });

  it('a module that was empty, or written again while it was imported (an editor saving it), is HANDLER_ERROR, not a missing export', async () => {
    const empty = await failureOf('empty.mjs', '', 'greet');
    expect(empty).toMatchObject({ code: 'HANDLER_ERROR', message: expect.stringContaining('empty.mjs is empty or was being saved as it was loaded (saved half-way?)') });
    // Written while imported (here by itself, as an editor's save would, between the read and the
    // check): before, HANDLER_NOT_FOUND "has no export", the file being whole again by the check.
    const rewritten = await failureOf('rewritten.mjs', "import { appendFileSync } from 'node:fs';\nappendFileSync(new URL(import.meta.url), '// saved again\\n');\n", 'greet');
    expect(rewritten).toMatchObject({ code: 'HANDLER_ERROR', message: expect.stringContaining('rewritten.mjs is empty or was being saved as it was loaded') });
  });

  it("a transpiled CommonJS module's names: __esModule and its module.exports object (default) are not listed as exports, nor hinted", async () => {
    const transpiled = await failureOf('transpiled.cjs', '"use strict";\nObject.defineProperty(exports, "__esModule", { value: true });\nexports.greet = async function greet() { return 1; };\n', 'greet', 'build');
    expect(transpiled.message).toMatch(/transpiled\.cjs has no export "build" \(exports: default, greet\); set "export": "greet" on handler "greet" in kb\.plugin\.json$/);
    // Its exports object has a run, as a { run } handler has: still not one to set "export" to.
    const exportsRun = await failureOf('exports-run.cjs', 'exports.run = async function run() { return 1; };\n', 'greet', 'build');
    expect(exportsRun.message).toMatch(/exports-run\.cjs has no export "build" \(exports: default, run\); set "export": "run" on handler "greet" in kb\.plugin\.json$/);
  });

  it('lists ten handlers to choose from at most, saying there are more', async () => {
    const source = Array.from({ length: 12 }, (_, i) => `export const h${String(i).padStart(2, '0')} = () => 0;`).join('\n');
    const many = await failureOf('twelve.mjs', `${source}\n`, 'greet');
    expect(many.message).toMatch(/to the one it runs: "h00", "h01", "h02", "h03", "h04", "h05", "h06", "h07", "h08", "h09", …$/);
  });

  it('an export that is there but undefined is named as such, never "has no export" of a name the exports listed hold', async () => {
    // Before: '… has no export "default" (exports: default, x)'.
    const esm = await failureOf('undefined-default.mjs', 'export let x;\nexport default undefined;\n', 'greet');
    expect(esm).toEqual({
      code: 'HANDLER_NOT_FOUND',
      message: `Handler "greet" of plugin "@t/hint": export "default" of ${path.join(root, 'undefined-default.mjs')} is not a handler (a function or defineHandler({ run }) was expected, got undefined)`,
    });
    const cjs = await failureOf('undefined-run.cjs', 'exports.run = undefined;\n', 'greet', 'run');
    expect(cjs.message).toMatch(/: export "run" of \S+undefined-run\.cjs is not a handler \(a function or defineHandler\(\{ run \}\) was expected, got undefined\)$/);
  });
});
