import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { HandlerNotFoundError, MANIFEST_FILE, PluginRegistry, ValidationError, serializeError } from '@kb-labs/plugin-execution-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SAMPLE = fileURLToPath(new URL('./fixtures/plugins/sample', import.meta.url));
const SAMPLE_ID = '@fixtures/sample';

let tmp: string;
let n = 0;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'kb-core-registry-test-'));
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A plugin folder whose kb.plugin.json holds exactly `text`. */
async function pluginFolder(text: string | undefined): Promise<string> {
  const dir = path.join(tmp, `plugin-${++n}`);
  await mkdir(dir, { recursive: true });
  if (text !== undefined) await writeFile(path.join(dir, MANIFEST_FILE), text);
  return dir;
}

const manifest = (handlers: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  id: '@t/p',
  version: '1.0.0',
  handlers,
  ...extra,
});

describe('many plugins at once', () => {
  it('gives the event loop turns while it registers thousands of plugins, and registers them all', async () => {
    const root = await pluginFolder(undefined);
    await writeFile(path.join(root, 'h.mjs'), 'export default async (input) => input;');
    const handlers = { a: { entry: './h.mjs' }, b: { entry: './h.mjs' }, c: { entry: './h.mjs' } };
    const sources = Array.from({ length: 3000 }, (_, i) => ({ root, manifest: manifest(handlers, { id: `@t/many-${i}` }) }));
    // A host's own work (its HTTP server, timers) waiting while the registry registers: counted by setImmediate turns.
    let turns = 0;
    let registering = true;
    const tick = () => {
      if (!registering) return;
      turns++;
      setImmediate(tick);
    };
    setImmediate(tick);
    const registry = new PluginRegistry();
    const failures = await registry.addEach(sources);
    registering = false;
    expect(failures).toEqual([]);
    expect(registry.list().map((p) => p.id)).toEqual(sources.map((s) => s.manifest.id));
    expect(turns).toBeGreaterThan(0);
  });

  it('an unknown id among thousands of plugins is told with the first 20 of them and how many more, not a message naming every one (details keep them all)', async () => {
    const root = await pluginFolder(undefined);
    await writeFile(path.join(root, 'h.mjs'), 'export default async (input) => input;');
    const registry = new PluginRegistry();
    const ids = Array.from({ length: 2000 }, (_, i) => `@t/listed-${i}`);
    for (const id of ids) registry.register({ root, manifest: manifest({ run: { entry: './h.mjs' } }, { id }) });
    const first = ids.slice(0, 20).join(', ');
    let error: unknown;
    try {
      registry.resolve('@t/typo', 'run');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(HandlerNotFoundError);
    const notFound = error as HandlerNotFoundError;
    expect(notFound.message).toBe(`Plugin "@t/typo" is not registered (registered: ${first}; and 1980 more (its details.availablePlugins names every one))`);
    expect(notFound.details).toMatchObject({ pluginId: '@t/typo', handlerId: 'run', availablePlugins: ids });
    await expect(registry.reload('@t/typo')).rejects.toThrow(`Cannot reload plugin "@t/typo": it is not registered (registered: ${first}; and 1980 more (its details.availablePlugins names every one))`);
    // Twenty or fewer are all named, as before.
    const few = new PluginRegistry();
    for (const id of ids.slice(0, 20)) few.register({ root, manifest: manifest({ run: { entry: './h.mjs' } }, { id }) });
    expect(() => few.resolve('@t/typo', 'run')).toThrow(`Plugin "@t/typo" is not registered (registered: ${first})`);
  });
});


async function validationFailure(promise: Promise<unknown> | (() => unknown)): Promise<ValidationError> {
  const error = await (typeof promise === 'function' ? Promise.resolve().then(promise) : promise).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ValidationError);
  expect((error as ValidationError).code).toBe('VALIDATION_ERROR');
  return error as ValidationError;
}

describe('loading a plugin folder', () => {
  it('reads and validates kb.plugin.json and resolves handlers to modules in the folder', async () => {
    const registry = new PluginRegistry();
    const plugin = await registry.load(SAMPLE);
    expect(plugin.id).toBe(SAMPLE_ID);
    expect(plugin.root).toBe(SAMPLE);
    expect(plugin.manifest.version).toBe('1.2.3');
    expect(Object.isFrozen(plugin)).toBe(true);
    expect(registry.get(SAMPLE_ID)).toBe(plugin);
    expect(registry.list()).toEqual([plugin]);

    const run = registry.resolve(SAMPLE_ID, 'run');
    expect(run).toMatchObject({
      pluginId: SAMPLE_ID,
      handlerId: 'run',
      pluginRoot: SAMPLE,
      entryPath: path.join(SAMPLE, 'run.mjs'),
      exportName: 'default',
      timeoutMs: 5000,
      memoryMb: 64,
      plugin,
    });
    const other = registry.resolve(SAMPLE_ID, 'other');
    expect(other).toMatchObject({ entryPath: path.join(SAMPLE, 'lib', 'other.cjs'), exportName: 'named', timeoutMs: undefined, memoryMb: undefined });
    // The resolved module really is the fixture's.
    const mod = (await import(run.entryPath)) as { default: (input: unknown) => Promise<unknown> };
    await expect(mod.default(1)).resolves.toEqual({ ran: true, input: 1 });
  });

  it('merges handler permissions over the plugin’s: lists united, booleans and services overridden', async () => {
    const registry = new PluginRegistry();
    await registry.load(SAMPLE);
    expect(registry.resolve(SAMPLE_ID, 'run').permissions).toEqual({
      platform: { logger: ['info'], cache: ['get', 'set'] },
      fs: { read: ['data', 'assets'], write: ['out'] },
      env: ['HOME', 'LANG'],
      network: true,
    });
    expect(registry.resolve(SAMPLE_ID, 'other').permissions).toEqual({
      platform: { logger: ['info'], cache: ['get'] },
      fs: { read: ['data'] },
      env: ['HOME'],
      network: false,
    });
  });

  it('refuses a folder without kb.plugin.json, naming the folder', async () => {
    const dir = await pluginFolder(undefined);
    const error = await validationFailure(new PluginRegistry().load(dir));
    expect(error.message).toContain(MANIFEST_FILE);
    expect(error.message).toContain(dir);
    const missing = await validationFailure(new PluginRegistry().load(path.join(tmp, 'does-not-exist')));
    expect(missing.message).toContain('does-not-exist');
  });

  it('refuses a kb.plugin.json that is a FIFO (or a folder) at once, instead of waiting on it for ever', async () => {
    const dir = await pluginFolder(undefined);
    execFileSync('mkfifo', [path.join(dir, MANIFEST_FILE)]);
    // Before: the read waited for a writer, and every execution of every plugin with it.
    const error = await validationFailure(new PluginRegistry().load(dir));
    expect(error.message).toBe(`Cannot read ${path.join(dir, MANIFEST_FILE)}: it is not a regular file (a folder, a FIFO, a device or a socket is never read)`);
    const folder = await pluginFolder(undefined);
    await mkdir(path.join(folder, MANIFEST_FILE));
    expect((await validationFailure(new PluginRegistry().load(folder))).message).toContain('it is not a regular file');
  });

  // A hostile or generated manifest must not hold the host: each path was compared with every other
  // (116 s for this one, the event loop held throughout); about 2.5 s now. The test's own limit is the bound.
  it('registers a manifest of 30,000 handlers, each with its own fs.write and fs.read folder, within the test\'s limit', async () => {
    const handlers: Record<string, unknown> = {};
    for (let i = 0; i < 30_000; i++) handlers[`h${i}`] = { entry: './a.mjs', permissions: { fs: { write: [`w${i}`], read: [`w${i}/../r${i}`] } } };
    const dir = await pluginFolder(JSON.stringify(manifest(handlers)));
    await writeFile(path.join(dir, 'a.mjs'), 'export default () => 1;\n');
    const plugin = await new PluginRegistry().load(dir);
    expect(Object.keys(plugin.manifest.handlers)).toHaveLength(30_000);
  }, 60_000);

  it('refuses a path to the manifest file itself, naming the folder to give instead', async () => {
    const dir = await pluginFolder(JSON.stringify(manifest({ run: { entry: './run.js' } })));
    const error = await validationFailure(new PluginRegistry().load(path.join(dir, MANIFEST_FILE)));
    expect(error.message).toBe(`Plugin folder ${path.join(dir, MANIFEST_FILE)} is a file; give the folder that holds its ${MANIFEST_FILE} (${dir})`);
  });

  it('says of a missing folder given as a relative path that it was read from the working directory, and of one with "\\" that it is no separator', async () => {
    const relative = await validationFailure(new PluginRegistry().load('./plugins/report'));
    expect(relative.message).toBe(
      `Plugin folder ${path.resolve('plugins/report')} does not exist (the relative path "./plugins/report" is resolved from the working directory, ${process.cwd()}, ` +
        `not from the host's module: new URL("./plugins/report/", import.meta.url), or path.join(__dirname, "./plugins/report") in CommonJS, names one beside it)`,
    );
    const absolute = await validationFailure(new PluginRegistry().load(path.join(tmp, 'missing')));
    expect(absolute.message).toBe(`Plugin folder ${path.join(tmp, 'missing')} does not exist`);
    const url = await validationFailure(new PluginRegistry().load(pathToFileURL(path.join(tmp, 'missing'))));
    expect(url.message).toBe(`Plugin folder ${path.join(tmp, 'missing')} does not exist`);
    if (path.sep === '/') {
      const windows = await validationFailure(new PluginRegistry().load('.\\plugins\\report'));
      expect(windows.message).toBe(`Plugin folder ${path.resolve('.\\plugins\\report')} does not exist ("\\" separates no folders on ${process.platform}: write the path with "/")`);
    }
  });

  it('refuses an empty or non-string folder', async () => {
    await validationFailure(new PluginRegistry().load(''));
    await validationFailure(new PluginRegistry().load(42 as unknown as string));
  });

  it('refuses invalid JSON, naming the file', async () => {
    const dir = await pluginFolder('{ "id": "@t/p", ');
    const error = await validationFailure(new PluginRegistry().load(dir));
    expect(error.message).toContain(path.join(dir, MANIFEST_FILE));
    expect(error.message).toMatch(/not valid JSON/);
  });

  it('asked for a plugin while a load() not awaited yet still reads its folder, says so (not "no plugins are registered … call registerPlugin()")', async () => {
    const dir = await pluginFolder(JSON.stringify({ id: '@t/late', version: '1', handlers: { run: { entry: './run.mjs' } } }));
    const registry = new PluginRegistry();
    const loading = registry.load(dir);
    expect(() => registry.resolve('@t/late', 'run')).toThrow('Plugin "@t/late" is not registered (none is yet); a plugin is still being registered (a registerPlugin() not awaited yet): await it before execute()');
    await loading;
    expect(registry.resolve('@t/late', 'run').handlerId).toBe('run');
    expect(() => registry.resolve('@t/other', 'run')).toThrow('Plugin "@t/other" is not registered (registered: @t/late)');
  });

  it('says where invalid JSON goes wrong (line and column) and the usual cause, without quoting the file', async () => {
    const trailing = await pluginFolder('{\n  "id": "@t/p",\n  "version": "1",\n}\n');
    expect((await validationFailure(new PluginRegistry().load(trailing))).message).toBe(
      `${path.join(trailing, MANIFEST_FILE)} is not valid JSON: Expected double-quoted property name at line 4, column 1 (a trailing comma: JSON allows none)`,
    );
    const comment = await pluginFolder('{\n  // the id\n  "id": "@t/p"\n}');
    expect((await validationFailure(new PluginRegistry().load(comment))).message).toMatch(/ at line 2, column 3 \(a comment: JSON has none\)$/);
    // The id it claims is read all the same: that plugin's executions get the error (VALIDATION_ERROR), not "not registered".
    const registry = new PluginRegistry();
    await registry.addEach([comment]);
    expect(() => registry.resolve('@t/p', 'run')).toThrow(ValidationError);
    expect(() => registry.resolve('@t/p', 'run')).toThrow(/is not valid JSON: .* \(a comment: JSON has none\)$/);
    const notJson = await pluginFolder('SECRET-TEXT of some other file');
    const error = await validationFailure(new PluginRegistry().load(notJson));
    expect(error.message).toBe(`${path.join(notJson, MANIFEST_FILE)} is not valid JSON: unexpected text at line 1, column 1 (a manifest is one JSON object, starting with "{")`);
    // Mistakes JSON.parse names by their character only: placed too, with their usual cause.
    const arrayComma = await pluginFolder('{\n  "id": "@t/p",\n  "channels": [1, ]\n}');
    expect((await validationFailure(new PluginRegistry().load(arrayComma))).message).toMatch(/: unexpected character '\]' at line 3, column 19 \(a trailing comma: JSON allows none\)$/);
    const keyComment = await pluginFolder('{\n  "id": // the id\n  "@t/p"\n}');
    expect((await validationFailure(new PluginRegistry().load(keyComment))).message).toMatch(/: unexpected character '\/' at line 2, column 9 \(a comment: JSON has none\)$/);
    const singleQuotes = await pluginFolder("{'id': '@t/p'}");
    expect((await validationFailure(new PluginRegistry().load(singleQuotes))).message).toMatch(/ at line 1, column 2 \(JSON strings take double quotes\)$/);
    expect(JSON.stringify(serializeError(error))).not.toContain('SECRET-TEXT');
  });

  it('a { root, manifest } source with a key it does not take, or a field whose getter throws, is a ValidationError naming it', async () => {
    const good = manifest({ run: { entry: './run.mjs' } });
    const extra = await validationFailure(() => new PluginRegistry().register({ root: tmp, manifest: good, manifests: {} } as never));
    expect(extra.message).toContain('- manifests: is not taken; did you mean "manifest"?');
    const throwing = { root: tmp, get manifest(): unknown { throw new Error('getter failed'); } };
    expect((await validationFailure(() => new PluginRegistry().register(throwing))).message).toContain('- manifest: its getter threw: getter failed');
  });

  it('a { root, manifest } source whose manifest is a string (its file\'s path, or its JSON unparsed) says so and what to give, not "(root): must be an object"', async () => {
    const dir = await pluginFolder(JSON.stringify(manifest({ run: { entry: './run.mjs' } })));
    const folderAlone = `the plugin's folder alone (${JSON.stringify(dir)}) in place of { root, manifest }, and its kb.plugin.json is read`;
    const asPath = await validationFailure(() => new PluginRegistry().register({ root: dir, manifest: './plugins/greeter/kb.plugin.json' }));
    expect(asPath.details.issues).toEqual([{ path: 'manifest', message: `is a string ("./plugins/greeter/kb.plugin.json"), not a manifest object: give ${folderAlone}` }]);
    const [failure] = await new PluginRegistry().addEach([{ root: dir, manifest: ` ${JSON.stringify(manifest({ run: { entry: './run.mjs' } }))}` }]);
    expect((failure!.error as ValidationError).details.issues).toEqual([{ path: 'manifest', message: `is JSON text, not a manifest object: give JSON.parse() of it, or ${folderAlone}` }]);
  });

  it('register() given a folder path (or file: URL) says load() reads a folder, not that a folder path is taken', async () => {
    for (const given of [tmp, pathToFileURL(tmp)]) {
      const error = await validationFailure(() => new PluginRegistry().register(given as never));
      expect(error.message).toContain('register() was given a folder path');
      expect(error.message).toContain(`- root: is a folder: register() takes { root, manifest }; load("${String(given)}") reads the folder's kb.plugin.json`);
    }
  });

  it('reads a manifest saved with a byte-order mark, as Windows editors save one', async () => {
    const dir = await pluginFolder(`\uFEFF${JSON.stringify(manifest({ run: { entry: './run.mjs' } }))}`);
    const plugin = await new PluginRegistry().load(dir);
    expect(Object.keys(plugin.manifest.handlers)).toEqual(['run']);
  });

  it('refuses a manifest that is not UTF-8, saying so (its bytes turned into U+FFFD, an entry named in Latin-1 was "caf\ufffd.mjs does not exist")', async () => {
    const latin1 = await pluginFolder(undefined);
    const text = JSON.stringify(manifest({ run: { entry: './café.mjs' } }));
    await writeFile(path.join(latin1, MANIFEST_FILE), Buffer.from(text, 'latin1'));
    const notUtf8 = await validationFailure(new PluginRegistry().load(latin1));
    expect(notUtf8.message).toBe(`Cannot read ${path.join(latin1, MANIFEST_FILE)}: it is not UTF-8 text (byte 0xe9 at offset ${text.indexOf('é')}); save it as UTF-8`);
    const utf16 = await pluginFolder(undefined);
    await writeFile(path.join(utf16, MANIFEST_FILE), Buffer.from(`\uFEFF${JSON.stringify(manifest({ run: { entry: './run.mjs' } }))}`, 'utf16le'));
    expect((await validationFailure(new PluginRegistry().load(utf16))).message).toBe(`Cannot read ${path.join(utf16, MANIFEST_FILE)}: it is UTF-16 text; save it as UTF-8`);
  });

  it('refuses an entry that is a folder, naming the handler', async () => {
    const dir = await pluginFolder(JSON.stringify(manifest({ run: { entry: './lib' } })));
    await mkdir(path.join(dir, 'lib'));
    const error = await validationFailure(new PluginRegistry().load(dir));
    expect(error.message).toContain('handlers.run.entry: ./lib is a folder; name the module file in it (./lib/index.js, say)');
  });

  it('refuses an entry that is a FIFO or a device (an import would wait on it for good), naming the handler', async () => {
    const dir = await pluginFolder(JSON.stringify(manifest({ pipe: { entry: './pipe.mjs' }, zero: { entry: './zero.mjs' } })));
    execFileSync('mkfifo', [path.join(dir, 'pipe.mjs')]);
    await symlink('/dev/zero', path.join(dir, 'zero.mjs')).catch(() => undefined);
    const error = await validationFailure(new PluginRegistry().load(dir));
    expect(error.message).toContain('handlers.pipe.entry: ./pipe.mjs is a FIFO, not a module file');
    // A link to /dev/zero leads out of the folder first; either way it is refused.
    expect(error.message).toMatch(/handlers\.zero\.entry: \.\/zero\.mjs (is a link to \/dev\/zero|is a device)/);
  });

  it('refuses an invalid manifest, naming the JSON path of every problem', async () => {
    const dir = await pluginFolder(
      JSON.stringify({
        id: 'not a valid id',
        version: '',
        handlers: { run: { entry: 42, timeoutMs: -1 }, ok: { entry: './ok.js', extra: true } },
        channels: [{ path: '/chat', handler: 'missing' }, { path: 'no-slash', handler: 'ok' }],
      }),
    );
    const error = await validationFailure(new PluginRegistry().load(dir));
    for (const p of ['id', 'version', 'handlers.run.entry', 'handlers.run.timeoutMs', 'handlers.ok', 'channels[0].handler', 'channels[1].path']) {
      expect(error.message).toContain(`  - ${p}: `);
    }
    expect(error.message).toContain('"extra"');
    expect(error.message).toContain(path.join(dir, MANIFEST_FILE));
    const issues = error.details.issues as Array<{ path: string; message: string }>;
    expect(issues.map((i) => i.path)).toEqual(expect.arrayContaining(['handlers.run.entry', 'channels[0].handler']));
  });

  it('names a channel pointing at a missing handler', async () => {
    const error = await validationFailure(() =>
      new PluginRegistry().register({ root: tmp, manifest: manifest({ run: { entry: 'a.js' } }, { channels: [{ path: '/c', handler: 'nope' }] }) }),
    );
    expect(error.message).toMatch(/channels\[0\]\.handler: .*"nope"/);
  });

  it('refuses an entry that leads into a declared fs.write folder through a link (a handler that writes it could rewrite that code)', async () => {
    const dir = await pluginFolder(JSON.stringify({ id: '@t/linked-entry', version: '1', permissions: { fs: { write: ['data'] } }, handlers: { run: { entry: './link.mjs' }, other: { entry: './other.mjs' } } }));
    await mkdir(path.join(dir, 'data'));
    await writeFile(path.join(dir, 'data', 'real.mjs'), 'export default () => 1;\n');
    await writeFile(path.join(dir, 'other.mjs'), 'export default () => 2;\n');
    await symlink(path.join(dir, 'data', 'real.mjs'), path.join(dir, 'link.mjs'));
    const error = await validationFailure(new PluginRegistry().load(dir));
    expect(error.message).toContain('handlers.run.entry: ./link.mjs leads into the declared fs.write folder "data" (through a link): a handler that writes it could rewrite this code; keep code out of write folders');
    expect(error.message).not.toContain('handlers.other');
  });

  it('refuses a "__proto__" key anywhere else in kb.plugin.json too (a platform service of that name was passed over in silence)', async () => {
    const dir = await pluginFolder('{ "id": "@t/proto2", "version": "1.0.0", "permissions": { "platform": { "__proto__": true } }, "handlers": { "run": { "entry": "./a.js", "permissions": { "platform": { "kv": true, "__proto__": ["x"] } } } } }');
    const error = await validationFailure(new PluginRegistry().load(dir));
    expect(error.message).toContain('permissions.platform.__proto__: is a reserved name');
    expect(error.message).toContain('handlers.run.permissions.platform.__proto__: is a reserved name');
  });

  it('refuses a handler keyed "__proto__" in kb.plugin.json (JSON makes it an own key), naming it', async () => {
    const dir = await pluginFolder('{ "id": "@t/proto", "version": "1.0.0", "handlers": { "run": { "entry": "./a.js" }, "__proto__": { "entry": "./a.js" } } }');
    const error = await validationFailure(new PluginRegistry().load(dir));
    expect(error.message).toContain('handlers.__proto__: is not a handler id: it must start with a letter or digit');
  });

  it('refuses a kb.plugin.json that gives a key twice in one object (JSON.parse keeps the last without a word), naming each', async () => {
    const dir = await pluginFolder(
      String.raw`{ "id": "@t/twice", "version": "1.0.0", "handlers": { "run": { "entry": "./a.js", "note": "a,\"}" }, "r\u0075n": { "entry": "./b.js" } },` +
        String.raw` "channels": [{ "path": "/a", "handler": "run" }, { "path": "/b", "path": "/c", "handler": "run" }] }`,
    );
    const error = await validationFailure(new PluginRegistry().load(dir));
    expect(error.details.issues).toEqual([
      { path: 'handlers.run', message: 'is given twice (JSON keeps only the last)' },
      { path: 'channels[1].path', message: 'is given twice (JSON keeps only the last)' },
    ]);
    // A key given thrice is named once; one written with white space before its colon is a key all the same.
    const spaced = await pluginFolder('{ "id": "@t/spaced", "version": "1.0.0", "handlers": { "run" : { "entry": "./a.js" }, "run"\n: { "entry": "./b.js" }, "run"\t:{ "entry": "./c.js" } } }');
    const spacedError = await validationFailure(new PluginRegistry().load(spaced));
    expect(spacedError.details.issues).toEqual([{ path: 'handlers.run', message: 'is given twice (JSON keeps only the last)' }]);
    // The same key in different objects is no mistake.
    const apart = await pluginFolder('{ "id": "@t/apart", "version": "1.0.0", "handlers": { "run": { "entry": "./a.js" }, "entry": { "entry": "./a.js" } } }');
    expect((await new PluginRegistry().load(apart)).id).toBe('@t/apart');
  });

  it("a manifest with a key given twice lists its other problems too, and fails its own plugin's executions with them (not as unregistered)", async () => {
    const dir = await pluginFolder('{ "id": "@t/both", "version": "1.0.0", "permisions": {}, "handlers": { "h": { "entry": "./a.js", "timeoutMs": "5" }, "h": { "entry": "./a.js" } } }');
    const registry = new PluginRegistry();
    await registry.addEach([dir]);
    let caught: unknown;
    try {
      registry.resolve('@t/both', 'h');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ValidationError);
    expect((caught as ValidationError).details.issues).toEqual([
      { path: 'handlers.h', message: 'is given twice (JSON keeps only the last)' },
      { path: '(root)', message: 'unknown key "permisions"; did you mean "permissions"?' },
    ]);
  });

  it("an issue reaches the error's message on one line, with no control a terminal acts on (C1, bidirectional, line break); details keep it as it was", async () => {
    // JSON.stringify (how keys are quoted) writes out C0 controls but leaves a C1 CSI and a right-to-left override raw.
    const dir = await pluginFolder(JSON.stringify(manifest({ run: { entry: './a.js' }, 'r\u009b31m': { entry: './a.js' } }, { '\u009b2J\u202eyek': 1 })));
    const invalid = await validationFailure(() => new PluginRegistry().load(dir));
    expect(invalid.message).not.toMatch(/[\u007f-\u009f\u202e]/);
    expect(invalid.message.split('\n').slice(1)).toEqual([
      expect.stringMatching(/^ {2}- handlers\["r\\x9b31m"\]: is not a valid key: /),
      '  - (root): unknown key "\\x9b2J\\u202eyek"',
    ]);
    expect(invalid.details.issues).toContainEqual({ path: '(root)', message: 'unknown key "\u009b2J\u202eyek"' });
    // An entry path quoted as it is (an ESC, a line break that would forge an issue line).
    const entries = await pluginFolder(JSON.stringify(manifest({ run: { entry: './x\x1b]0;owned\x07\n  - id: forged' } })));
    await mkdir(path.join(entries, 'x\x1b]0;owned\x07\n  - id: forged'));
    const folder = await validationFailure(() => new PluginRegistry().load(entries));
    expect(folder.message.split('\n').slice(1)).toEqual([expect.stringMatching(/^ {2}- handlers\.run\.entry: \.\/x\\x1b\]0;owned\\x07\\n {2}- id: forged is a folder/)]);
    // A message quoted in an issue (a getter's error) cannot forge an issue line of its own.
    const source = {
      root: tmp,
      get manifest(): never {
        throw new Error('gone\n  - id: forged');
      },
    };
    const unread = await validationFailure(() => new PluginRegistry().register(source as never));
    expect(unread.message.split('\n')).toEqual([expect.any(String), '  - manifest: its getter threw: gone\\n  - id: forged']);
    expect(unread.details.issues).toEqual([{ path: 'manifest', message: 'its getter threw: gone\n  - id: forged' }]);
  });

  it('says a { root } without its manifest lacks the manifest (not that the root is missing)', async () => {
    const error = await validationFailure(() => new PluginRegistry().register({ root: tmp } as never));
    expect(error.message).toMatch(/needs its manifest/);
    expect(error.details.issues).toEqual([{ path: 'manifest', message: expect.stringMatching(/^is required/) }]);
  });

  it.runIf(path.sep === '/')('refuses a plugin folder with a "\\" in its path, from which Node imports no module, naming root (not at each execution)', async () => {
    const error = await validationFailure(() => new PluginRegistry().register({ root: path.join(tmp, 'back\\slash'), manifest: manifest({ run: { entry: 'run.mjs' } }) }));
    expect(error.message).toBe(`Plugin folder ${path.join(tmp, 'back\\slash')} cannot be loaded:\n  - root: has a "\\" in its path, and Node imports no module from such a path: move the plugin to a folder without one`);
    expect(error.details.issues).toEqual([{ path: 'root', message: expect.stringMatching(/^has a "\\" in its path/) }]);
  });

  it('refuses a manifest without handlers', async () => {
    const error = await validationFailure(() => new PluginRegistry().register({ root: tmp, manifest: manifest({}) }));
    expect(error.message).toContain('handlers');
  });

  it.each(['../x.js', '..', 'a/../../x.js', '/etc/passwd', '..\\x.js', 'C:\\x.js', 'a\0.js', ''])('refuses the entry %o, which leaves the folder', async (entry) => {
    const error = await validationFailure(() => new PluginRegistry().register({ root: tmp, manifest: manifest({ run: { entry } }) }));
    expect(error.message).toContain('handlers.run.entry');
  });

  it.each(['.\\run.mjs', 'dist\\run.mjs'])('refuses the entry %o, written with Windows separators, saying to use "/"', async (entry) => {
    const error = await validationFailure(() => new PluginRegistry().register({ root: tmp, manifest: manifest({ run: { entry } }) }));
    expect(error.message).toContain('handlers.run.entry: must use "/" between folders, not "\\" (as "./dist/run.mjs")');
  });

  it('accepts entries that only look odd but stay inside', () => {
    const registry = new PluginRegistry();
    const plugin = registry.register({ root: tmp, manifest: manifest({ a: { entry: './x/../y.js' }, b: { entry: 'dist/..hidden.js' } }) });
    expect(registry.resolve(plugin.id, 'a').entryPath).toBe(path.join(tmp, 'y.js'));
    expect(registry.resolve(plugin.id, 'b').entryPath).toBe(path.join(tmp, 'dist', '..hidden.js'));
  });

  it('refuses a second plugin with the same id from another folder; the same folder again is a no-op', async () => {
    const registry = new PluginRegistry();
    const first = await registry.load(SAMPLE);
    expect(await registry.load(SAMPLE)).toBe(first);
    expect(await registry.load(`${SAMPLE}${path.sep}.`)).toBe(first);
    const copy = await pluginFolder(JSON.stringify(manifest({ run: { entry: 'run.mjs' } }, { id: SAMPLE_ID })));
    const error = await validationFailure(registry.load(copy));
    expect(error.message).toContain(SAMPLE_ID);
    expect(error.message).toContain(SAMPLE);
    expect(error.message).toContain(copy);
    expect(registry.get(SAMPLE_ID)).toBe(first);
  });

  it('of two sources with one plugin id, the first listed is registered, whichever is read first', async () => {
    const folder = await pluginFolder(JSON.stringify(manifest({ run: { entry: 'run.mjs' } }, { id: '@t/twice' })));
    const inMemory = { root: tmp, manifest: manifest({ run: { entry: 'run.mjs' } }, { id: '@t/twice' }) };
    // The in-memory one needs no read, so it would be ready first.
    const registry = new PluginRegistry();
    const failures = await registry.addEach([folder, inMemory]);
    expect(registry.get('@t/twice')?.root).toBe(folder);
    expect(failures.map((f) => f.source)).toEqual(['plugins[1]']);
    expect(failures[0]!.error.message).toContain(`already registered from ${folder}`);
    // A handler only the refused copy has: its HANDLER_NOT_FOUND says a copy was refused.
    const onlyThere = (() => {
      try {
        return registry.resolve('@t/twice', 'build');
      } catch (e) {
        return e as Error;
      }
    })() as Error;
    expect(onlyThere).toBeInstanceOf(HandlerNotFoundError);
    expect(onlyThere.message).toBe(`Plugin "@t/twice" has no handler "build" (handlers: run); another copy of the plugin was refused (plugins[1]: ${failures[0]!.error.message})`);
    const error = await validationFailure(new PluginRegistry().addAll([folder, inMemory]));
    expect(error.message).toContain(`already registered from ${folder}; refusing a second copy from ${tmp}`);
  });

  it('refuses an entry that is a symbolic link out of the plugin folder; links inside it, and a linked folder, are fine', async () => {
    const outside = path.join(tmp, 'outside.mjs');
    await writeFile(outside, 'export default () => 1;');
    const folder = await pluginFolder(JSON.stringify(manifest({ out: { entry: './out.mjs' }, in: { entry: './in.mjs' } })));
    await writeFile(path.join(folder, 'real.mjs'), 'export default () => 2;');
    await symlink(outside, path.join(folder, 'out.mjs'));
    await symlink('./real.mjs', path.join(folder, 'in.mjs'));
    const error = await validationFailure(new PluginRegistry().load(folder));
    expect(error.message).toContain(`handlers.out.entry: ./out.mjs is a link to ${outside}, outside the plugin folder`);
    expect(error.message).not.toContain('handlers.in.entry');
    const inside = await pluginFolder(JSON.stringify(manifest({ in: { entry: './in.mjs' } }, { id: '@t/linked' })));
    await writeFile(path.join(inside, 'real.mjs'), 'export default () => 2;');
    await symlink('./real.mjs', path.join(inside, 'in.mjs'));
    const linkedFolder = path.join(tmp, `linked-${++n}`);
    await symlink(inside, linkedFolder);
    const plugin = await new PluginRegistry().load(linkedFolder);
    expect(plugin.id).toBe('@t/linked');
  });

  it('reports every failing source of addAll together', async () => {
    const bad = await pluginFolder('not json');
    const error = await validationFailure(
      new PluginRegistry().addAll([SAMPLE, bad, { root: tmp, manifest: { id: 'x' } }, path.join(tmp, 'missing')]),
    );
    expect(error.message).toMatch(/3 plugins could not be registered/);
    for (const p of ['plugins[1]', 'plugins[2]', 'plugins[3]']) expect(error.message).toContain(p);
    expect(error.message).not.toContain('plugins[0]');
  });

  it('a folder that is no usable path or file: URL is named where it was given: plugins[i] in a list, no path for load() (registerPlugin\'s argument)', async () => {
    const registry = new PluginRegistry();
    const failures = await registry.addEach([SAMPLE, new URL('http://example.test/plugin')]);
    expect(failures[0]!.error.details).toMatchObject({ path: 'plugins[1]' });
    // Before: 'plugins[]', for a folder given to registerPlugin() too.
    const error = await validationFailure(registry.load(new URL('http://example.test/plugin')));
    expect(error.message).toMatch(/^Plugin folder http:\/\/example\.test\/plugin is not a usable file: URL/);
    expect(error.details).not.toHaveProperty('path');
  });

  it('addEach registers the good sources, keeps the failures, and resolve() answers with a failed plugin\'s own error', async () => {
    const registry = new PluginRegistry();
    const invalid = { root: tmp, manifest: { id: '@x/invalid', version: '1', handlers: {} } };
    const failures = await registry.addEach([SAMPLE, invalid, path.join(tmp, 'missing')]);
    expect(failures.map((f) => [f.source, f.pluginId, f.error.code])).toEqual([
      ['plugins[1]', '@x/invalid', 'VALIDATION_ERROR'],
      ['plugins[2]', undefined, 'VALIDATION_ERROR'],
    ]);
    expect(registry.failures).toEqual(failures);
    expect(registry.get(SAMPLE_ID)).toBeDefined();
    expect(() => registry.resolve('@x/invalid', 'run')).toThrow(failures[0]!.error);
    let notFound: unknown;
    try {
      registry.resolve('@x/other', 'run');
    } catch (error) {
      notFound = error;
    }
    expect(notFound).toBeInstanceOf(HandlerNotFoundError);
    expect((notFound as Error).message).toMatch(/2 plugin source\(s\) failed to load: plugins\[1\]: .*; plugins\[2\]: Plugin folder \S+missing does not exist/s);
    expect((notFound as Error).message).not.toContain('more');
  });

  it('a failed source is forgotten once its folder registers (fixed, then registerPlugin()), and only that one', async () => {
    const registry = new PluginRegistry();
    const broken = await pluginFolder('{"id": "@x/fixed", ');
    const other = await pluginFolder('not json either');
    const failures = await registry.addEach([SAMPLE, broken, other]);
    expect(failures.map((f) => [f.source, f.pluginId, f.root])).toEqual([
      // The id a broken file seems to claim is kept: its executions get its error.
      ['plugins[1]', '@x/fixed', broken],
      ['plugins[2]', undefined, other],
    ]);
    await writeFile(path.join(broken, MANIFEST_FILE), JSON.stringify(manifest({ run: { entry: 'a.js' } }, { id: '@x/fixed' })));
    await registry.load(broken);
    expect(registry.failures.map((f) => f.source)).toEqual(['plugins[2]']);
    // Given as { root, manifest }: the same folder, fixed in memory.
    registry.register({ root: other, manifest: manifest({ run: { entry: 'a.js' } }, { id: '@x/other' }) });
    expect(registry.failures).toEqual([]);
  });

  it('a registry shared by two backends keeps the failures of both lists; a folder failing again is listed once', async () => {
    const registry = new PluginRegistry();
    const first = await pluginFolder('not json');
    const second = await pluginFolder('{ nor this');
    const onlyFirst = await pluginFolder(undefined);
    await registry.addEach([first, onlyFirst]);
    const again = await registry.addEach([SAMPLE, second, first]);
    expect(again.map((f) => f.root)).toEqual([second, first]);
    expect(registry.failures.map((f) => [f.source, f.root])).toEqual([
      ['plugins[1]', onlyFirst],
      ['plugins[1]', second],
      ['plugins[2]', first],
    ]);
  });

  it('a plugin not registered, with more than three sources that failed, names three and says how many more', async () => {
    const registry = new PluginRegistry();
    await registry.addEach(Array.from({ length: 5 }, (_, i) => path.join(tmp, `missing-${i}`)));
    expect(() => registry.resolve('@x/other', 'run')).toThrow(/5 plugin source\(s\) failed to load: plugins\[0\]: .*missing-0.*plugins\[2\]: .*missing-2 does not exist; and 2 more \(health\(\) names every one\)$/s);
  });

  it('loads a folder given as a file: URL (string or URL object) or as a path relative to the working directory', async () => {
    const url = new URL('./fixtures/plugins/sample/', import.meta.url);
    expect((await new PluginRegistry().load(url)).root).toBe(SAMPLE);
    expect((await new PluginRegistry().load(url.href)).root).toBe(SAMPLE);
    const failures = await new PluginRegistry().addEach([url, path.relative(process.cwd(), SAMPLE)]);
    expect(failures).toEqual([]);
    expect((await new PluginRegistry().load(path.relative(process.cwd(), SAMPLE))).root).toBe(SAMPLE);
    await expect(new PluginRegistry().load('file://remote-host/plugins/x')).rejects.toThrow(/not a usable file: URL/);
  });

  it('refuses a register() call without a root', () => {
    for (const source of [undefined, null, {}, { root: '' }, { root: 5, manifest: {} }]) {
      expect(() => new PluginRegistry().register(source as never)).toThrow(ValidationError);
    }
  });

  it('unregisters, tells its listeners, and the id registers again from another folder with a newer load of its code', async () => {
    const registry = new PluginRegistry();
    const removed: unknown[] = [];
    registry.onUnregister(() => {
      throw new Error('a listener that throws undoes nothing');
    });
    const stopHearing = registry.onUnregister((plugin) => removed.push(plugin));
    const first = await registry.load(SAMPLE);
    expect(registry.unregister(SAMPLE_ID)).toBe(true);
    expect(removed).toEqual([first]);
    expect(registry.unregister(SAMPLE_ID)).toBe(false);
    expect(removed).toHaveLength(1);
    expect(() => registry.resolve(SAMPLE_ID, 'run')).toThrow(HandlerNotFoundError);
    const again = registry.register({ root: tmp, manifest: { id: SAMPLE_ID, version: '2', handlers: { run: { entry: 'a.js' } } } });
    expect(again).toMatchObject({ root: tmp, generation: 0 });
    expect(again.moduleKey).toBeGreaterThan(first.moduleKey);
    expect(registry.resolve(SAMPLE_ID, 'run').moduleKey).toBe(again.moduleKey);
    stopHearing();
    registry.unregister(SAMPLE_ID);
    expect(removed).toHaveLength(1);
  });

  it('a reload that read its manifest while the plugin was unregistered and registered again (another root, or a manifest of its own) installs nothing over that registration', async () => {
    for (const again of [{ root: tmp }, { root: SAMPLE }]) {
      const registry = new PluginRegistry();
      await registry.load(SAMPLE);
      const reloaded = registry.reload(SAMPLE_ID);
      // Microtasks only: the reload is reading its file (I/O), which cannot have come back yet.
      for (let i = 0; i < 5; i++) await null;
      registry.unregister(SAMPLE_ID);
      const registered = registry.register({ ...again, manifest: { id: SAMPLE_ID, version: '2', handlers: { other: { entry: 'a.js' } } } });
      expect(await reloaded).toBe(registered);
      expect(registry.get(SAMPLE_ID)).toBe(registered);
      expect(registry.resolve(SAMPLE_ID, 'other').moduleKey).toBe(registered.moduleKey);
    }
  });

  it('unregister() forgets a failure to load a source that claimed the id', async () => {
    const registry = new PluginRegistry();
    const invalid = { root: tmp, manifest: { id: '@x/invalid', version: '1', handlers: {} } };
    await registry.addEach([SAMPLE, invalid]);
    expect(registry.failures.map((f) => f.pluginId)).toEqual(['@x/invalid']);
    expect(registry.unregister('@x/invalid')).toBe(false);
    expect(registry.failures).toEqual([]);
    expect(() => registry.resolve('@x/invalid', 'run')).toThrow(/is not registered \(registered: @fixtures\/sample\)$/);
  });
});

describe('resolve()', () => {
  const registry = new PluginRegistry();
  beforeAll(async () => {
    await registry.load(SAMPLE);
    registry.register({ root: tmp, manifest: { id: 'constructor', version: '1', handlers: { toString: { entry: 'a.js' } } } });
  });

  it('names the unknown plugin and the registered ones', () => {
    const error = captureNotFound(() => registry.resolve('@nope/missing', 'run'));
    expect(error.message).toContain('@nope/missing');
    expect(error.message).toContain(SAMPLE_ID);
    expect(error.details).toMatchObject({ pluginId: '@nope/missing', handlerId: 'run', availablePlugins: [SAMPLE_ID, 'constructor'] });
  });

  it('names the unknown handler and the plugin’s handlers', () => {
    const error = captureNotFound(() => registry.resolve(SAMPLE_ID, 'walk'));
    expect(error.message).toContain('"walk"');
    expect(error.message).toContain('run, other');
    expect(error.details).toMatchObject({ pluginId: SAMPLE_ID, handlerId: 'walk', availableHandlers: ['run', 'other'] });
  });

  it('says so when nothing is registered, and names the queue host only when the runners are remote', () => {
    const local = captureNotFound(() => new PluginRegistry().resolve('a', 'b')).message;
    expect(local).toMatch(/no plugins are registered: give the backend the plugins' folders in its `plugins` option, or call registerPlugin\(\)\)$/);
    expect(local).not.toMatch(/queue/);
    const remote = captureNotFound(() => new PluginRegistry().resolve('a', 'b', true)).message;
    expect(remote).toMatch(/call registerPlugin\(\); a queue backend's host needs them as its workers do\)$/);
  });

  it.each(['toString', '__proto__', 'constructor', 'hasOwnProperty', 'valueOf', '__defineGetter__'])(
    'resolves the Object.prototype name %s to nothing',
    (name) => {
      captureNotFound(() => registry.resolve(name === 'constructor' ? 'constructor-x' : name, 'run'));
      captureNotFound(() => registry.resolve(SAMPLE_ID, name));
      if (name !== 'toString') captureNotFound(() => registry.resolve('constructor', name));
    },
  );

  it('resolves real handlers and plugins that carry such names', () => {
    expect(registry.resolve('constructor', 'toString').entryPath).toBe(path.join(tmp, 'a.js'));
  });
});

function captureNotFound(fn: () => unknown): HandlerNotFoundError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(HandlerNotFoundError);
  expect((caught as HandlerNotFoundError).code).toBe('HANDLER_NOT_FOUND');
  return caught as HandlerNotFoundError;
}

describe('reloading a plugin', () => {
  it('reads the manifest again: a new generation, its handlers resolved anew, listeners told', async () => {
    const dir = await pluginFolder(JSON.stringify(manifest({ run: { entry: 'a.js' } })));
    const registry = new PluginRegistry();
    const heard: number[] = [];
    const stop = registry.onReload((plugin) => heard.push(plugin.generation));
    const first = await registry.load(dir);
    expect(first.generation).toBe(0);
    expect(registry.resolve('@t/p', 'run').generation).toBe(0);
    await writeFile(path.join(dir, MANIFEST_FILE), JSON.stringify(manifest({ run: { entry: 'b.js' }, added: { entry: 'c.js' } })));
    const second = await registry.reload('@t/p');
    expect(second).toMatchObject({ id: '@t/p', root: dir, generation: 1 });
    expect(registry.get('@t/p')).toBe(second);
    expect(registry.resolve('@t/p', 'run')).toMatchObject({ entryPath: path.join(dir, 'b.js'), generation: 1 });
    expect(registry.resolve('@t/p', 'added').entryPath).toBe(path.join(dir, 'c.js'));
    stop();
    await registry.reload('@t/p');
    expect(heard).toEqual([1]);
  });

  it('keeps the previous version registered when the new manifest is invalid or claims another id', async () => {
    const dir = await pluginFolder(JSON.stringify(manifest({ run: { entry: 'a.js' } })));
    const registry = new PluginRegistry();
    const first = await registry.load(dir);
    await writeFile(path.join(dir, MANIFEST_FILE), JSON.stringify(manifest({ run: { entyr: 'a.js' } })));
    const invalid = await validationFailure(registry.reload('@t/p'));
    expect(invalid.message).toContain(path.join(dir, MANIFEST_FILE));
    await writeFile(path.join(dir, MANIFEST_FILE), '{ not json');
    await validationFailure(registry.reload('@t/p'));
    await writeFile(path.join(dir, MANIFEST_FILE), JSON.stringify(manifest({ run: { entry: 'a.js' } }, { id: '@t/other' })));
    expect((await validationFailure(registry.reload('@t/p'))).message).toMatch(/now says its id is "@t\/other"/);
    expect(registry.get('@t/p')).toBe(first);
    expect(registry.resolve('@t/p', 'run').entryPath).toBe(path.join(dir, 'a.js'));
  });

  it('keeps the in-memory manifest of a plugin registered as { root, manifest }, with a new generation', async () => {
    const registry = new PluginRegistry();
    const first = registry.register({ root: tmp, manifest: manifest({ run: { entry: 'a.js' } }) });
    const second = await registry.reload('@t/p');
    expect(second.manifest).toBe(first.manifest);
    expect(second.generation).toBe(1);
  });

  it('takes the same { root } registered again with another manifest as its next generation; the same manifest again changes nothing', async () => {
    const registry = new PluginRegistry();
    const heard: string[] = [];
    registry.onReload((plugin) => heard.push(plugin.manifest.version));
    const first = registry.register({ root: tmp, manifest: manifest({ run: { entry: 'a.js' } }) });
    expect(registry.register({ root: tmp, manifest: manifest({ run: { entry: 'a.js' } }) })).toBe(first);
    const second = registry.register({ root: tmp, manifest: manifest({ run: { entry: 'a.js' }, other: { entry: 'b.js' } }, { version: '2.0.0' }) });
    expect(second).toMatchObject({ generation: 1, manifest: { version: '2.0.0' } });
    expect(registry.get('@t/p')).toBe(second);
    expect(registry.resolve('@t/p', 'other')).toMatchObject({ entryPath: path.join(tmp, 'b.js'), generation: 1 });
    expect(heard).toEqual(['2.0.0']);
    // A reload keeps the manifest last given.
    expect((await registry.reload('@t/p')).manifest.version).toBe('2.0.0');
    // A folder's plugin given again as { root, manifest }: that manifest, and a reload no longer reads the file over it.
    const dir = await pluginFolder(JSON.stringify(manifest({ run: { entry: 'a.js' } }, { id: '@t/folder' })));
    await registry.load(dir);
    registry.register({ root: dir, manifest: manifest({ run: { entry: 'c.js' } }, { id: '@t/folder' }) });
    expect((await registry.reload('@t/folder')).manifest.handlers.run?.entry).toBe('c.js');
  });

  it('runs overlapping reloads of one plugin in order: the last called installs the manifest read last', async () => {
    const dir = await pluginFolder(JSON.stringify(manifest({ a: { entry: 'a.js' } })));
    const registry = new PluginRegistry();
    await registry.load(dir);
    const file = path.join(dir, MANIFEST_FILE);
    for (let round = 0; round < 20; round++) {
      writeFileSync(file, JSON.stringify(manifest({ a: { entry: 'a.js' } })));
      // A watcher's reload reads the file while the build writes its next version...
      const first = registry.reload('@t/p');
      await new Promise((resolve) => setImmediate(resolve));
      writeFileSync(file, JSON.stringify(manifest({ a: { entry: 'a.js' }, b: { entry: 'b.js' } })));
      // ...and the deploy's reload, called after the write, resolves with it and stays installed.
      const last = await registry.reload('@t/p');
      expect(Object.keys(last.manifest.handlers)).toEqual(['a', 'b']);
      expect((await first).generation).toBeLessThan(last.generation);
      expect(registry.get('@t/p')).toBe(last);
    }
    // Reloads that fail, one waiting for the other, do not hold up the next one.
    writeFileSync(file, '{ not json');
    await Promise.all([validationFailure(registry.reload('@t/p')), validationFailure(registry.reload('@t/p'))]);
    writeFileSync(file, JSON.stringify(manifest({ c: { entry: 'c.js' } })));
    expect(Object.keys((await registry.reload('@t/p')).manifest.handlers)).toEqual(['c']);
  });

  it('refuses an unknown plugin with HANDLER_NOT_FOUND naming it and what is registered', async () => {
    const registry = new PluginRegistry();
    await registry.load(SAMPLE);
    const error = await registry.reload('@t/nope').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HandlerNotFoundError);
    expect((error as HandlerNotFoundError).message).toBe(`Cannot reload plugin "@t/nope": it is not registered (registered: ${SAMPLE_ID})`);
  });
});

describe("a caller's ids in HANDLER_NOT_FOUND", () => {
  it('are said with their control characters written out (an ANSI escape or a NUL would reach a terminal that shows the log)', () => {
    const registry = new PluginRegistry();
    registry.register({ root: process.cwd(), manifest: { id: '@x/ids', version: '1.0.0', handlers: { run: { entry: 'run.mjs' } } } });
    const unknownPlugin = (() => {
      try {
        registry.resolve('@x/\u001b[31mred\u0000', 'run');
      } catch (error) {
        return error as Error;
      }
    })();
    const unknownHandler = (() => {
      try {
        registry.resolve('@x/ids', 'r\u001b[2Jun');
      } catch (error) {
        return error as Error;
      }
    })();
    expect(unknownPlugin).toBeInstanceOf(HandlerNotFoundError);
    expect(unknownPlugin!.message).toContain('Plugin "@x/\\x1b[31mred\\x00" is not registered');
    expect(unknownHandler!.message).toContain('has no handler "r\\x1b[2Jun"');
    for (const error of [unknownPlugin!, unknownHandler!]) expect(error.message).not.toMatch(/[\u0000-\u0008\u000b-\u001f]/);
  });
});
