import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PluginRegistry, ValidationError, pluginManifestSchema } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';

const require = createRequire(import.meta.url);
const shipped = JSON.parse(readFileSync(require.resolve('@kb-labs/plugin-execution-core/kb.plugin.schema.json'), 'utf8')) as Record<string, any>;

describe('the manifest JSON Schema shipped in core', () => {
  it('is generated from the zod schema the runtime validates with', () => {
    const generated = z.toJSONSchema(pluginManifestSchema(), { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
    const { $id, title, ...rest } = shipped;
    expect(rest).toEqual(generated);
    expect($id).toMatch(/kb\.plugin\.schema\.json$/);
    expect(title).toContain('kb.plugin.json');
  });

  it('lets editors complete and check every field: strict objects, required fields, descriptions', () => {
    expect(shipped.additionalProperties).toBe(false);
    expect(shipped.required).toEqual(expect.arrayContaining(['id', 'version', 'handlers']));
    expect(Object.keys(shipped.properties)).toEqual(expect.arrayContaining(['$schema', 'id', 'version', 'description', 'permissions', 'handlers', 'channels']));
    const handler = shipped.properties.handlers.additionalProperties;
    expect(handler.additionalProperties).toBe(false);
    expect(handler.required).toEqual(['entry']);
    // "handlers": {} is refused at load: the schema says so too.
    expect(shipped.properties.handlers.minProperties).toBe(1);
    expect(Object.keys(handler.properties)).toEqual(['entry', 'export', 'timeoutMs', 'memoryMb', 'permissions', 'description']);
    expect(handler.properties.entry.description).toMatch(/relative to the plugin folder/);
    expect(Object.keys(shipped.properties.permissions.properties)).toEqual(['platform', 'fs', 'env', 'network', 'childProcess']);
  });
});

describe('reserved platform names, in the runtime and in the JSON Schema alike', () => {
  const platform = shipped.properties.permissions.properties.platform;
  const patterns = (schema: { pattern?: string; allOf?: Array<{ pattern: string }> }) => (schema.allOf ?? [schema]).map((each) => new RegExp(each.pattern!, 'u'));
  const editorTakes = (names: RegExp[], name: string) => names.every((pattern) => pattern.test(name));
  const services = patterns(platform.propertyNames);
  const methods = patterns(platform.additionalProperties.anyOf.find((each: { type?: string }) => each.type === 'array').items);
  const register = (permissions: unknown) => new PluginRegistry().register({ root: process.cwd(), manifest: { id: '@x/names', version: '1.0.0', permissions, handlers: { run: { entry: 'run.mjs' } } } });

  it('a service named as what every object has (valueOf, toString, constructor …) or the language reads (then, toJSON) is refused by both: a call of it could never be made', () => {
    for (const name of ['valueOf', 'toString', 'hasOwnProperty', 'constructor', '__proto__', 'prototype', 'caller', 'arguments', 'then', 'toJSON']) {
      expect(editorTakes(services, name), name).toBe(false);
      expect(() => register({ platform: { [name]: true } }), name).toThrow(/is a reserved name/);
    }
    expect(editorTakes(services, 'kv')).toBe(true);
  });

  it('a method named constructor, __proto__ or prototype, or one the language reads (then, toJSON, toString …: ctx.platform answers those itself) is refused by both; call or get, by neither', () => {
    for (const name of ['constructor', '__proto__', 'prototype', '__defineGetter__', 'caller', 'arguments', 'then', 'toJSON', 'valueOf', 'toString', 'toLocaleString']) {
      expect(editorTakes(methods, name), name).toBe(false);
      expect(() => register({ platform: { kv: [name] } }), name).toThrow(/is a reserved name/);
    }
    for (const name of ['call', 'get', 'thenable']) {
      expect(editorTakes(methods, name), name).toBe(true);
      expect(() => register({ platform: { kv: [name] } })).not.toThrow();
    }
  });
});

describe('entries and fs paths: what the JSON Schema can say of them, it says as the runtime does', () => {
  const handler = shipped.properties.handlers.additionalProperties;
  const entryPattern = new RegExp(handler.properties.entry.pattern, 'u');
  const fsPattern = new RegExp(shipped.properties.permissions.properties.fs.properties.read.items.pattern, 'u');
  const register = (entry: string, fs?: unknown) =>
    new PluginRegistry().register({ root: process.cwd(), manifest: { id: '@x/paths', version: '1.0.0', ...(fs ? { permissions: { fs } } : {}), handlers: { run: { entry } } } });

  it.each(['../run.mjs', '..', './../run.mjs', '/etc/run.mjs', 'C:/run.mjs', 'a\\run.mjs', 'a\0.mjs', '.', './', 'dist/'])('an entry %j: refused by both', (entry) => {
    expect(entryPattern.test(entry)).toBe(false);
    expect(() => register(entry)).toThrow(/handlers\.run\.entry/);
  });

  it.each(['run.mjs', './dist/run.mjs', 'a/b/../c.mjs', '..hidden.mjs', 'a:b.mjs'])('an entry %j: taken by the JSON Schema', (entry) => {
    expect(entryPattern.test(entry)).toBe(true);
  });

  it.each(['../data', '/etc', '\\\\server\\share', 'C:\\data', 'data/*', 'a\0b', 'data\\x/../kb.plugin.json', 'data,etc'])('an fs path %j: refused by both', (p) => {
    expect(fsPattern.test(p)).toBe(false);
    expect(() => register('run.mjs', { read: [p] })).toThrow(/permissions\.fs\.read/);
  });

  it.each(['data', './data', 'data/sub', '.'])('an fs.read path %j: taken by both', (p) => {
    expect(fsPattern.test(p)).toBe(true);
    expect(() => register('run.mjs', { read: [p] })).not.toThrow();
  });
});

describe('manifest top-level keys', () => {
  const base = { id: '@x/strict', version: '1.0.0', handlers: { run: { entry: 'run.mjs' } } };

  it.each(['   ', ' 1.0.0', '1.0.0 ', '1.0.0\n', '1.0.0\n-rc.1'])('refuses a version that is blank, spans lines or starts or ends with a space (%j), as the JSON Schema does: a queue worker compares it as it is', (version) => {
    expect(() => new PluginRegistry().register({ root: process.cwd(), manifest: { ...base, version } })).toThrow(/- version: must be one line, not blank, and not start or end with a space/);
    expect(new RegExp(shipped.properties.version.pattern, 'u').test(version)).toBe(false);
  });

  it.each(['1.0.0\x1b[2J', '1.0.0\u009b2J', '1.0.0\u202e', '1.0.0\r', '1.0\t0'])('refuses a version with a control character (%j), as the JSON Schema does: it is quoted in messages a terminal shows and set on spans', (version) => {
    // Before: taken, and quoted as it was in a queue's plugin-version-mismatch message (JSON leaves C1 and bidi controls raw).
    expect(() => new PluginRegistry().register({ root: process.cwd(), manifest: { ...base, version } })).toThrow(/- version: must be one line, not blank, and not start or end with a space, with no control characters/);
    expect(new RegExp(shipped.properties.version.pattern, 'u').test(version)).toBe(false);
  });

  it('takes a version with spaces inside it', () => {
    expect(new PluginRegistry().register({ root: process.cwd(), manifest: { ...base, version: '1.0.0 (beta 2)' } }).manifest.version).toBe('1.0.0 (beta 2)');
  });

  it('refuses an unknown top-level key, naming it', () => {
    let error: unknown;
    try {
      new PluginRegistry().register({ root: process.cwd(), manifest: { ...base, permisions: { network: true } } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(/unknown key "permisions"; did you mean "permissions"\?/);
  });

  it('names the nearest key a manifest takes, at every depth, for each unknown key', () => {
    const manifest = {
      ...base,
      handlers: { h: { entry: './h.mjs', timeoutMS: 100, permissions: { fss: {} } } },
      channels: [{ path: '/x', handler: 'h', maxPayLoad: 5 }],
      zzzzzz: 1,
    };
    let error: unknown;
    try {
      new PluginRegistry().register({ root: process.cwd(), manifest });
    } catch (e) {
      error = e;
    }
    expect((error as ValidationError).details.issues).toEqual(
      expect.arrayContaining([
        { path: 'handlers.h', message: 'unknown key "timeoutMS"; did you mean "timeoutMs"?' },
        { path: 'handlers.h.permissions', message: 'unknown key "fss"; did you mean "fs"?' },
        { path: 'channels[0]', message: 'unknown key "maxPayLoad"; did you mean "maxPayload"?' },
        { path: '(root)', message: 'unknown key "zzzzzz"' },
      ]),
    );
  });

  it('says the bound a number breaks that decides, once: a handler timeoutMs of 1e20 is above the longest timer (not also above 2**53 - 1)', () => {
    for (const timeoutMs of [1e20, 3e9]) {
      let error: unknown;
      try {
        new PluginRegistry().register({ root: process.cwd(), manifest: { ...base, handlers: { h: { entry: './h.mjs', timeoutMs } } } });
      } catch (e) {
        error = e;
      }
      expect((error as ValidationError).details.issues).toEqual([{ path: 'handlers.h.timeoutMs', message: 'must be at most 2147483647' }]);
    }
  });

  it('refuses an export that is no identifier, naming the field', () => {
    expect(() => new PluginRegistry().register({ root: process.cwd(), manifest: { ...base, handlers: { run: { entry: 'run.mjs', export: '1run' } } } })).toThrow(/- handlers\.run\.export: must be an export name/);
    expect(new PluginRegistry().register({ root: process.cwd(), manifest: { ...base, handlers: { run: { entry: 'run.mjs', export: '$run_1' } } } }).manifest.handlers.run!.export).toBe('$run_1');
  });

  it('refuses a channel whose handler is a name every object has (toString, constructor), not one of its handlers', () => {
    for (const handler of ['toString', 'constructor']) {
      expect(() => new PluginRegistry().register({ root: process.cwd(), manifest: { ...base, channels: [{ path: '/chat', handler }] } }), handler).toThrow(
        `channels[0].handler: names handler "${handler}", which is not in "handlers"`,
      );
    }
  });

  it('accepts "$schema" (for editors) and ignores it at run time', () => {
    const plugin = new PluginRegistry().register({ root: process.cwd(), manifest: { $schema: './node_modules/@kb-labs/plugin-execution-core/kb.plugin.schema.json', ...base } });
    expect(plugin.id).toBe('@x/strict');
  });
});

describe('declared fs paths inside a declared fs.write folder', () => {
  const register = (manifest: Record<string, unknown>) => new PluginRegistry().register({ root: process.cwd(), manifest: { id: '@x/nested', version: '1.0.0', ...manifest } });

  it('are refused, naming each path and the folder it lies in, across handlers and the plugin level (its writer could swap it for a link)', () => {
    let error: unknown;
    try {
      register({
        permissions: { fs: { write: ['./out/'] } },
        handlers: {
          swap: { entry: 'run.mjs', permissions: { fs: { write: ['data'] } } },
          look: { entry: 'run.mjs', permissions: { fs: { read: ['data/inner', 'elsewhere'], write: ['out/sub'] } } },
        },
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    const message = (error as Error).message;
    expect(message).toContain('handlers.look.permissions.fs.read[0]: lies inside the declared fs.write folder "data"');
    expect(message).toContain('handlers.look.permissions.fs.write[0]: lies inside the declared fs.write folder "./out/"');
    expect(message).toContain('declare the outer folder only');
    expect(message).not.toContain('fs.read[1]');
  });

  it('a handler id or service name that is not a valid key says what a key must be (not zod\'s "Invalid key in record")', () => {
    expect(() => register({ handlers: { '-bad id': { entry: 'run.mjs' } } })).toThrow(
      /handlers\["-bad id"\]: is not a valid key: it must start with a letter or digit and use only letters, digits, "\.", "_", ":" and "-"/,
    );
    expect(() => register({ permissions: { platform: { 'my service': true } }, handlers: { run: { entry: 'run.mjs' } } })).toThrow(
      /permissions\.platform\["my service"\]: is not a valid key: it must be an identifier/,
    );
  });

  it('a write path that is, or holds, what the host loads (the manifest, a package.json, a handler\'s code) is refused', () => {
    const write = (paths: string[]) => () => register({ handlers: { run: { entry: './handlers/run.mjs', permissions: { fs: { write: paths } } } } });
    expect(write(['kb.plugin.json'])).toThrow(/handlers\.run\.permissions\.fs\.write\[0\]: is the manifest: a handler that writes it could rewrite what the host loads; declare a folder of its own, such as "data"/);
    expect(write(['package.json'])).toThrow(/fs\.write\[0\]: is the package\.json:/);
    expect(write(['./handlers/run.mjs'])).toThrow(/fs\.write\[0\]: is handler "run"'s code \(\.\/handlers\/run\.mjs\):/);
    expect(write(['handlers'])).toThrow(/fs\.write\[0\]: holds handler "run"'s code \(\.\/handlers\/run\.mjs\):/);
    expect(write(['node_modules/helper'])).toThrow(/fs\.write\[0\]: is in a node_modules folder: the plugin's bare imports resolve there/);
    expect(write(['handlers/package.json'])).toThrow(/fs\.write\[0\]: is the package\.json of handler "run"'s code:/);
    expect(register({ handlers: { run: { entry: './handlers/run.mjs', permissions: { fs: { write: ['data', 'handlers-data'], read: ['handlers'] } } } } }).id).toBe('@x/nested');
  });

  it('a write path that names what the host loads in other letter case, or another Unicode form, is refused too: a file system that ignores them (macOS\'s, Windows\' by default) opens the same file', () => {
    const write = (paths: string[], entry = './handlers/run.mjs') => () => register({ handlers: { run: { entry, permissions: { fs: { write: paths } } } } });
    // Before: all accepted, and on such a file system a handler granted "HANDLERS" rewrote ./handlers/run.mjs.
    expect(write(['HANDLERS'])).toThrow(/fs\.write\[0\]: holds handler "run"'s code \(\.\/handlers\/run\.mjs\), named in other letter case or Unicode form \(a file system that ignores those, as macOS's and Windows' do by default, opens the same file\):/);
    expect(write(['KB.Plugin.JSON'])).toThrow(/fs\.write\[0\]: is the manifest, named in other letter case/);
    expect(write(['Package.json'])).toThrow(/fs\.write\[0\]: is the package\.json, named in other letter case/);
    expect(write(['lib/Node_Modules'])).toThrow(/fs\.write\[0\]: is in a node_modules folder/);
    expect(write(['cafe\u0301'], './caf\u00e9/run.mjs')).toThrow(/fs\.write\[0\]: holds handler "run"'s code/);
    expect(() => register({ permissions: { fs: { write: ['Data'] } }, handlers: { run: { entry: 'run.mjs', permissions: { fs: { read: ['data/inner'] } } } } })).toThrow(
      /handlers\.run\.permissions\.fs\.read\[0\]: lies inside the declared fs\.write folder "Data"/,
    );
    // Names that differ in more than case stay apart.
    expect(register({ handlers: { run: { entry: './handlers/run.mjs', permissions: { fs: { write: ['handlers2', 'Data'], read: ['DATA2'] } } } } }).id).toBe('@x/nested');
  });

  it('a write folder of "." is refused, as is a "*" or a ","; the same folder declared twice, or read and written, is fine', () => {
    expect(() => register({ handlers: { run: { entry: 'run.mjs', permissions: { fs: { write: ['.'], read: ['config'] } } } } })).toThrow(
      /handlers\.run\.permissions\.fs\.write\[0\]: is the plugin folder itself: its handlers could rewrite the manifest and code the host loads; declare a folder inside it, such as "data"/,
    );
    expect(() => register({ permissions: { fs: { write: ['./'] } }, handlers: { run: { entry: 'run.mjs' } } })).toThrow(/permissions\.fs\.write\[0\]: is the plugin folder itself/);
    expect(() => register({ handlers: { run: { entry: 'run.mjs', permissions: { fs: { read: ['data/*'] } } } } })).toThrow(
      /handlers\.run\.permissions\.fs\.read\[0\]: must not contain "\*" \(Node's permission model reads it as a wildcard\)/,
    );
    // Before: taken here, run on in-process and worker-pool, and refused on subprocess at every execution
    // ("Cannot restrict a child to "<root>/a,b": … a comma"), since Node's flags split "a,b" in two.
    expect(() => register({ handlers: { run: { entry: 'run.mjs', permissions: { fs: { read: ['a,b'] } } } } })).toThrow(
      /handlers\.run\.permissions\.fs\.read\[0\]: must not contain "," \(Node's permission flags split a path at a comma/,
    );
    expect(() => register({ permissions: { fs: { write: ['out,etc'] } }, handlers: { run: { entry: 'run.mjs' } } })).toThrow(/permissions\.fs\.write\[0\]: must not contain ","/);
    const plugin = register({
      permissions: { fs: { write: ['out'] } },
      handlers: { a: { entry: 'run.mjs', permissions: { fs: { read: ['out', 'output'], write: ['out/'] } } }, b: { entry: 'run.mjs', permissions: { fs: { write: ['outer'] } } } },
    });
    expect(plugin.id).toBe('@x/nested');
  });
});

describe('channel paths', () => {
  const manifest = (channelPath: string) => ({ id: '@x/ch', version: '1.0.0', handlers: { h: { entry: 'h.mjs' } }, channels: [{ path: channelPath, handler: 'h' }] });

  it('takes literal segments and whole ":name" parameters', () => {
    for (const good of ['/', '/chat', '/chat/', '/ws/rooms/:room', '/v1.2/a:b', '/..hidden']) expect(pluginManifestSchema().safeParse(manifest(good)).success, good).toBe(true);
  });

  it('refuses a path that repeats a parameter name, and one that matches the same URLs as an earlier channel (the mount could serve neither)', () => {
    const twice = { ...manifest('/rooms/:id'), channels: [{ path: '/rooms/:id', handler: 'h' }, { path: '/rooms/:name', handler: 'h' }, { path: '/a/:x/b/:x', handler: 'h' }] };
    const result = pluginManifestSchema().safeParse(twice);
    expect(result.error?.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
      ['channels.1.path', 'matches the same URLs as channels[0].path (parameter names aside): a path is served by one channel'],
      ['channels.2.path', 'repeats the parameter name ":x"'],
    ]);
    expect(pluginManifestSchema().safeParse({ ...manifest('/a'), channels: [{ path: '/a/:x', handler: 'h' }, { path: '/a/b', handler: 'h' }] }).success).toBe(true);
    // A trailing slash is no other path to a mount.
    const slash = pluginManifestSchema().safeParse({ ...manifest('/a'), channels: [{ path: '/chat', handler: 'h' }, { path: '/chat/', handler: 'h' }] });
    expect(slash.error?.issues.map((i) => i.path.join('.'))).toEqual(['channels.1.path']);
  });

  it('refuses a path no request could match (".", "..", an empty segment, a ":" naming no parameter), naming the rule', () => {
    for (const bad of ['/r/:', '/../x', '/a/.', '/a//b', '/:1x', 'chat']) {
      const result = pluginManifestSchema().safeParse(manifest(bad));
      expect(result.success, bad).toBe(false);
      expect(result.error?.issues[0]).toMatchObject({ path: ['channels', 0, 'path'], message: expect.stringContaining('not "." or ".."') });
    }
  });
});
