import { spawn, spawnSync } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
/** A plugin whose handler blocks the event loop (test/fixtures/plugins/blocking). */
const blocking = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'plugins', 'blocking');
let root: string;

/** A plugin folder `name` under the test's root, with one handler `run` whose module is `source`. */
async function oneHandlerPlugin(name: string, id: string, source: string): Promise<string> {
  const dir = path.join(root, name);
  await mkdir(dir);
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id, version: '1.0.0', handlers: { run: { entry: './run.mjs' } } }));
  await writeFile(path.join(dir, 'run.mjs'), source);
  return dir;
}

/**
 * Resolves once process `pid` reads its standard input. On Linux that is when Node has made the
 * pipe non-blocking, as it does when process.stdin is first used: the CLI does so right after it
 * listens for SIGINT and SIGTERM. Not a guessed delay: loading the CLI's modules took 1.2 s here
 * beside another test run, and a signal that comes before its listeners kills it. Elsewhere, 1.5 s.
 */
async function readingStandardInput(pid: number): Promise<void> {
  if (!existsSync('/proc/self/fdinfo')) return void (await new Promise((resolve) => setTimeout(resolve, 1500)));
  const flags = async () => Number.parseInt(/^flags:\s*(\d+)/m.exec(await readFile(`/proc/${pid}/fdinfo/0`, 'utf8').catch(() => ''))?.[1] ?? '0', 8);
  await waitFor(async () => ((await flags()) & constants.O_NONBLOCK) !== 0, 15_000);
}

function run(args: string[]) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('kb-plugin-exec CLI', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('runs a handler and prints what it returned as JSON; the whole result with --json', () => {
    const plain = run(['run', fixturePlugins.basic, 'echo', '--input', '{"args":["--verbose"]}', '--workspace-root', root]);
    expect(plain.status).toBe(0);
    expect(JSON.parse(plain.stdout)).toEqual({ args: ['--verbose'] });
    const { status, stdout } = run(['run', fixturePlugins.basic, 'echo', '--input', '{"args":["--verbose"]}', '--workspace-root', root, '--json']);
    expect(status).toBe(0);
    const result = JSON.parse(stdout);
    expect(result).toMatchObject({ ok: true, data: { args: ['--verbose'] }, meta: { backend: 'in-process', handlerId: 'echo' } });
  });

  it('--backend runs the handler on the backend it names (meta.backend of the --json result)', () => {
    for (const backend of ['in-process', 'worker-pool', 'subprocess']) {
      const result = run(['run', fixturePlugins.basic, 'echo', '--input', '"where"', '--backend', backend, '--no-workspace', '--json']);
      expect(result.status, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ ok: true, data: 'where', meta: { backend } });
    }
  });

  it("keeps stdout for the result: what an in-process handler prints goes to stderr", async () => {
    const dir = await oneHandlerPlugin('prints', '@t/prints', "export default async () => { console.log('from console.log'); process.stdout.write('from stdout.write\\n'); return { done: true }; };\n");
    const { status, stdout, stderr } = run(['run', dir, 'run', '--json', '--no-workspace']);
    expect(status).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ ok: true, data: { done: true } });
    expect(stderr).toBe('from console.log\nfrom stdout.write\n');
  });

  it('--version prints the package version', async () => {
    const { version } = JSON.parse(await readFile(path.resolve(path.dirname(cli), '..', 'package.json'), 'utf8')) as { version: string };
    // The worker command's too (it said "unknown option --version: it is an option of `kb-plugin-exec run`").
    for (const args of [['--version'], ['worker', '--version']]) {
      const result = run(args);
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toBe(`kb-plugin-exec ${version}\n`);
    }
  });

  it('<command> --help and help <command> print that command\'s part of the help; --help alone prints all of it', () => {
    const all = run(['--help']).stdout;
    for (const args of [['run', '--help'], ['help', 'run']]) {
      const help = run(args);
      expect(help.status).toBe(0);
      expect(help.stdout.startsWith('Usage:\n  kb-plugin-exec run <plugin-dir> <handler> [options]\n\nRuns one handler')).toBe(true);
      expect(help.stdout).toContain('\nOptions for run:\n');
      // Before: the whole help, init's, sweep's and worker's with it.
      expect(help.stdout).not.toContain('init <dir> creates a plugin');
      expect(all).toContain(help.stdout.slice(help.stdout.indexOf('Runs one handler'), help.stdout.indexOf('\nOptions for run:')));
      expect(all).toContain(help.stdout.slice(help.stdout.indexOf('Options for run:')));
    }
    const sweep = run(['sweep', '--help']).stdout;
    expect(sweep).toMatch(/^Usage:\n {2}kb-plugin-exec sweep \[--workspace-root <dir>\] \[--foreign-older-than <ms>\]\n\nsweep removes the directories/);
    expect(sweep).not.toContain('Options for run:');
    expect(run(['help', 'init']).stdout).toMatch(/^Usage:\n {2}kb-plugin-exec init <dir>\n\ninit <dir> creates a plugin/);
    expect(all).toContain('init <dir> creates a plugin');
    expect(all).toContain('sweep removes the directories');
  });

  it('reads input from @file and passes the CLI context', async () => {
    const file = path.join(root, 'input.json');
    await writeFile(file, JSON.stringify({ from: 'file' }));
    const echo = run(['run', fixturePlugins.basic, 'echo', '--input', `@${file}`, '--workspace-root', root]);
    expect(JSON.parse(echo.stdout)).toEqual({ from: 'file' });
    const ctx = run(['run', fixturePlugins.basic, 'context', '--workspace-root', root]);
    expect(JSON.parse(ctx.stdout).context.host.kind).toBe('cli');
  });

  it('reads input from standard input with @-, once', () => {
    const piped = spawnSync(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--input', '@-', '--workspace-root', root], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '' },
      input: JSON.stringify({ from: 'stdin' }),
      timeout: 30_000,
    });
    expect(piped.stderr).toBe('');
    expect(JSON.parse(piped.stdout)).toEqual({ from: 'stdin' });
    const twice = spawnSync(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--input', '@-', '--context', '@-', '--workspace-root', root], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '' },
      input: '{}',
      timeout: 30_000,
    });
    expect(twice.status).toBe(2);
    expect(twice.stderr.split('\n')[0]).toBe('--input and --context both read standard input (@-), which is read once: give one of them a file (@<file>) or the text itself');
  });

  it('exits non-zero with the error code on failure', () => {
    const missing = run(['run', fixturePlugins.basic, 'nope', '--workspace-root', root]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^HANDLER_NOT_FOUND: /);
    // The result goes to stdout only when asked for.
    expect(missing.stdout).toBe('');
    const asJson = run(['run', fixturePlugins.basic, 'nope', '--workspace-root', root, '--json']);
    expect(asJson.status).toBe(1);
    expect(JSON.parse(asJson.stdout)).toMatchObject({ ok: false, error: { code: 'HANDLER_NOT_FOUND' } });
    const timeout = run(['run', fixturePlugins.basic, 'never-resolves', '--timeout', '100', '--workspace-root', root]);
    expect(timeout.status).toBe(1);
    expect(timeout.stderr).toMatch(/^TIMEOUT: /);
    const denied = run(['run', fixturePlugins.guarded, 'needs-kv', '--workspace-root', root]);
    expect(denied.stderr).toMatch(/^PERMISSION_DENIED: /);
    // What to add on this command line, not only the library's words for a host.
    expect(denied.stderr).toContain(`(on this command line: --grant '{"platform":{"kv":["get"]}}')`);
    const noService = run(['run', fixturePlugins.guarded, 'needs-kv', '--grant', '{"platform":{"kv":["get"]}}', '--workspace-root', root]);
    expect(noService.status).toBe(1);
    expect(noService.stderr).toMatch(/^HANDLER_ERROR: The handler threw InternalError \(INTERNAL_ERROR\): The host's platform has no method kv\.get/);
    expect(noService.stderr).toContain('(on this command line: --platform <module> gives the handler the services it calls)');
  });

  it('grants from --grant or from "permissions" in --context, never both (the request\'s would replace --grant), and says where to add what is missing', () => {
    const both = run(['run', fixturePlugins.guarded, 'needs-kv', '--grant', '{"platform":{"kv":["get"]}}', '--context', '{"permissions":{}}', '--workspace-root', root]);
    expect(both.status).toBe(2);
    expect(both.stderr.split('\n')[0]).toBe('--grant and a "permissions" field in --context both grant, and the request\'s would replace --grant: give one of them');
    const inGrant = run(['run', fixturePlugins.guarded, 'needs-kv', '--grant', '{"env":["HOME"]}', '--workspace-root', root]);
    expect(inGrant.status).toBe(1);
    expect(inGrant.stderr).toContain('(on this command line: add {"platform":{"kv":["get"]}} to --grant)');
    const inContext = run(['run', fixturePlugins.guarded, 'needs-kv', '--context', '{"permissions":{}}', '--workspace-root', root]);
    expect(inContext.status).toBe(1);
    expect(inContext.stderr).toContain('(on this command line: add {"platform":{"kv":["get"]}} to "permissions" in --context)');
  });

  it("the --grant it suggests for a manifest's paths is one shell word, whatever they hold ('$( …), and shows no control character; pasted, it grants them and runs nothing else", async () => {
    const dir = await oneHandlerPlugin('quoted-grant', '@t/quoted-grant', 'export default async () => "ran";\n');
    const marker = path.join(root, 'pasted-ran');
    const written = `data'$(touch ${marker})'`;
    const read = 'r\u009b2J\u202eev';
    // A line break or separator in a path (a manifest may hold one) is in the grant too.
    const broken = 'line\nbreak\u2028sep';
    await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@t/quoted-grant', version: '1.0.0', permissions: { fs: { write: [written], read: [read, broken] } }, handlers: { run: { entry: './run.mjs' } } }));
    const denied = run(['run', dir, 'run', '--no-workspace']);
    expect(denied.status).toBe(1);
    expect(denied.stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    const hinted = /\(on this command line: (--grant .+)\)$/m.exec(denied.stderr)?.[1];
    expect(hinted).toBeDefined();
    // The command as a user pastes it into sh. Before: the quote closed early, and the shell ran `touch`.
    const pasted = spawnSync('sh', ['-c', `"$0" "$1" run "$2" run --no-workspace ${hinted!}`, process.execPath, cli, dir], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(existsSync(marker)).toBe(false);
    expect(pasted.status, pasted.stderr).toBe(0);
    expect(JSON.parse(pasted.stdout)).toBe('ran');
  });

  it('prints null, valid JSON, for a handler that returns nothing', () => {
    const result = run(['run', fixturePlugins.basic, 'echo', '--no-workspace']);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe('null\n');
  });

  it('prints every value structured clone carries as JSON, never throwing: a cycle as "[Circular: <path>]", a Map as pairs, a Set, bytes and an Error as what they hold, NaN as a word', async () => {
    const dir = await oneHandlerPlugin(
      'values',
      '@t/values',
      [
        'export default async (input, ctx) => {',
        '  const o = { a: 1, list: [] }; o.self = o; o.list.push({ up: o });',
        "  const shared = { s: 1 };",
        '  if (input === "circular") return o;',
        "  return { m: new Map([['a', { deep: 1 }], [{ k: 1 }, 'object key']]), s: new Set([1, 'two']), e: new Error('as value'), b: Buffer.from('hi'), u16: new Uint16Array([1, 65535]), big: 10n, n: NaN, i: Infinity, ni: -Infinity, re: /a+/g, d: new Date(0), twice: [shared, shared], 'a key': o };",
        '};',
        '',
      ].join('\n'),
    );
    for (const backend of ['in-process', 'subprocess']) {
      const circular = run(['run', dir, 'run', '--input', '"circular"', '--no-workspace', '--backend', backend]);
      expect(circular.status, circular.stderr).toBe(0);
      expect(JSON.parse(circular.stdout)).toEqual({ a: 1, list: [{ up: '[Circular: $]' }], self: '[Circular: $]' });
      const asJson = run(['run', dir, 'run', '--input', '"circular"', '--no-workspace', '--backend', backend, '--json']);
      expect(asJson.status, asJson.stderr).toBe(0);
      expect(JSON.parse(asJson.stdout)).toMatchObject({ ok: true, data: { a: 1, list: [{ up: '[Circular: $.data]' }], self: '[Circular: $.data]' } });
      const values = run(['run', dir, 'run', '--no-workspace', '--backend', backend]);
      expect(values.status, values.stderr).toBe(0);
      const data = JSON.parse(values.stdout);
      expect(data).toEqual({
        m: [['a', { deep: 1 }], [{ k: 1 }, 'object key']],
        s: [1, 'two'],
        e: { name: 'Error', message: 'as value', stack: expect.stringMatching(/^Error: as value\n/) },
        b: [104, 105],
        u16: [1, 65535],
        big: '10n',
        n: 'NaN',
        i: 'Infinity',
        ni: '-Infinity',
        re: '/a+/g',
        d: '1970-01-01T00:00:00.000Z',
        twice: [{ s: 1 }, { s: 1 }],
        'a key': { a: 1, list: [{ up: '[Circular: $["a key"]]' }], self: '[Circular: $["a key"]]' },
      });
    }
  });

  it('grants permissions with --grant', () => {
    const result = run(['run', fixturePlugins.basic, 'platform-call', '--grant', '{"platform":{"kv":true}}', '--input', '{"method":"get"}', '--workspace-root', root]);
    expect(result.status).toBe(0);
    // No platform services given: the call is allowed but the host has no such method.
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, code: 'INTERNAL_ERROR' });
  });

  it('keeps stdout for the result on every backend: what a --platform module prints, as it loads and from its services, goes to stderr', async () => {
    const services = path.join(root, 'platform-prints.mjs');
    await writeFile(services, "console.log('platform loaded');\nexport const platform = { kv: { async get(key) { console.log(`kv.get ${key}`); return `value of ${key}`; } } };\n");
    for (const backend of ['in-process', 'worker-pool', 'subprocess']) {
      const result = run(['run', fixturePlugins.basic, 'platform-call', '--backend', backend, '--platform', services, '--grant', '{"platform":{"kv":true}}', '--input', '{"method":"get","args":["k"]}', '--no-workspace']);
      expect(result.status, `${backend}: ${result.stderr}`).toBe(0);
      // Before: "platform loaded" (and, off in-process, "kv.get k") on stdout above the JSON.
      expect(JSON.parse(result.stdout), backend).toEqual({ ok: true, value: 'value of k' });
      expect(result.stderr, backend).toContain('platform loaded\nkv.get k\n');
    }
  });

  it('--platform loads the host services from a module, so real plugins run', async () => {
    const services = path.join(root, 'platform.mjs');
    await writeFile(services, "export const platform = { kv: { async get(key) { return `value of ${key}`; } } };\n");
    const result = run(['run', fixturePlugins.basic, 'platform-call', '--platform', services, '--grant', '{"platform":{"kv":true}}', '--input', '{"method":"get","args":["k"]}', '--workspace-root', root]);
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ ok: true, value: 'value of k' });
    // CommonJS: `module.exports = { platform }` is the default export alone (before, taken whole as
    // the services: "The host's platform has no method kv.get").
    const commonJs = path.join(root, 'platform.cjs');
    await writeFile(commonJs, 'module.exports = { platform: { kv: { async get(key) { return `cjs ${key}`; } } } };\n');
    const fromCjs = run(['run', fixturePlugins.basic, 'platform-call', '--platform', commonJs, '--grant', '{"platform":{"kv":true}}', '--input', '{"method":"get","args":["k"]}', '--workspace-root', root]);
    expect(JSON.parse(fromCjs.stdout), fromCjs.stderr).toEqual({ ok: true, value: 'cjs k' });
    // A factory that throws: the flag and the module named, exit 2 (before, "ERROR: factory boom", exit 1).
    const factory = path.join(root, 'platform-factory.mjs');
    await writeFile(factory, 'export const platform = () => {\n  throw new Error("factory boom");\n};\n');
    const thrown = run(['run', fixturePlugins.basic, 'echo', '--platform', factory, '--no-workspace']);
    expect(thrown.status).toBe(2);
    expect(thrown.stderr.split('\n')[0]).toBe(`--platform: the function ${factory} exports threw: Error: factory boom (at ${pathToFileURL(factory).href}:2:9)`);
    // One that throws what no string can be made of (a null-prototype object): still the flag named, exit 2 (before, "TypeError: Cannot convert object to primitive value", exit 1).
    const unprintable = path.join(root, 'platform-unprintable.mjs');
    await writeFile(unprintable, 'export const platform = () => {\n  throw Object.create(null);\n};\n');
    const thrownUnprintable = run(['run', fixturePlugins.basic, 'echo', '--platform', unprintable, '--no-workspace']);
    expect(thrownUnprintable.status).toBe(2);
    expect(thrownUnprintable.stderr.split('\n')[0]).toBe(`--platform: the function ${unprintable} exports threw: an object that cannot be shown`);
    // A factory whose promise never settles: the process ran out of work (before, exit 0 with nothing printed).
    const never = path.join(root, 'platform-never.mjs');
    await writeFile(never, 'export const platform = () => new Promise(() => {});\n');
    const pending = run(['run', fixturePlugins.basic, 'echo', '--platform', never, '--no-workspace']);
    expect(pending.status).toBe(1);
    expect(pending.stdout).toBe('');
    expect(pending.stderr).toContain('ERROR: the command ended with its work still pending');
    const missing = run(['run', fixturePlugins.basic, 'echo', '--platform', path.join(root, 'no-such-module.mjs')]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('--platform: no file or package');
  });

  it('--logs prints each log line with what was logged with it', () => {
    const result = run(['run', fixturePlugins.basic, 'emits', '--input', '{"steps":1}', '--logs', '--no-workspace']);
    expect(result.status, result.stderr).toBe(0);
    const lines = result.stderr.split('\n');
    expect(lines).toContain('[logger:info] step 1');
    expect(lines).toContain('[logger:error] not really an error {"code":7}');
  });

  it("--logs prints each log line as one line, a handler's control characters written out; its data and error message reach the terminal without escape sequences", async () => {
    const dir = await oneHandlerPlugin(
      'forges',
      '@t/forges',
      [
        'export default async (input, ctx) => {',
        "  ctx.logger.info('one\\n[logger:error] forged \\x1b[31mred\\x1b]0;title\\x07 \\u009b2J\\r\\ttab \\u202eevil\\u2028x', { k: 'v\\x1b[0m\\u009b' });",
        "  if (input === 'fail') throw new Error('bad \\x1b[2J thing\\nsecond line');",
        "  return { s: 'a\\u009bb\\x1bc\\u202e' };",
        '};',
        '',
      ].join('\n'),
    );
    for (const backend of ['in-process', 'subprocess']) {
      const result = run(['run', dir, 'run', '--logs', '--no-workspace', '--backend', backend]);
      expect(result.status, result.stderr).toBe(0);
      // (Lines of the log only: a subprocess backend may warn of its sandbox here.)
      expect(result.stderr.split('\n').filter((line) => line.startsWith('[')), backend).toEqual(['[logger:info] one\\n[logger:error] forged \\x1b[31mred\\x1b]0;title\\x07 \\x9b2J\\r\\ttab \\u202eevil\\u2028x {"k":"v\\u001b[0m\\x9b"}']);
      // Still the same JSON (a C1 control written as \u009b), with no raw escape for a terminal.
      expect(result.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
      expect(JSON.parse(result.stdout)).toEqual({ s: 'a\u009bb\u001bc\u202e' });
    }
    const failed = run(['run', dir, 'run', '--no-workspace', '--input', '"fail"']);
    expect(failed.status).toBe(1);
    // The message's own line breaks stay (core's messages list problems line by line); its escapes do not.
    expect(failed.stderr).toBe(`HANDLER_ERROR: bad \\x1b[2J thing\nsecond line (at ${pathToFileURL(path.join(dir, 'run.mjs')).href}:3:31)\n`);
  });

  it("a handler's error says where in the plugin's files it was thrown (its module's load, or the handler), over the wire too; one the library made says no place", async () => {
    const throwsAtLoad = await oneHandlerPlugin('throws-at-load', '@t/throws-at-load', "const config = 1;\nthrow new Error('no config at load');\nexport default async () => config;\n");
    const throwsInRun = await oneHandlerPlugin('throws-in-run', '@t/throws-in-run', "export default async () => {\n  throw new TypeError('bad input');\n};\n");
    const notASchema = await oneHandlerPlugin('not-a-schema', '@t/not-a-schema', 'export default { input: 5, run: async () => 1 };\n');
    // Given by a link: an ES module's stack names its real path.
    const linked = path.join(root, 'throws-in-run-link');
    await symlink(throwsInRun, linked);
    const at = (dir: string, line: number, column: number) => `(at ${pathToFileURL(path.join(dir, 'run.mjs')).href}:${line}:${column})`;
    const load = run(['run', throwsAtLoad, 'run', '--no-workspace']);
    expect(load.stderr).toBe(`HANDLER_ERROR: no config at load ${at(throwsAtLoad, 2, 7)}\n`);
    for (const backend of ['in-process', 'subprocess']) {
      const thrown = run(['run', linked, 'run', '--no-workspace', '--backend', backend]);
      expect(thrown.status).toBe(1);
      // (The last line: a subprocess backend may warn of its sandbox first.)
      expect(thrown.stderr.trimEnd().split('\n').at(-1), backend).toBe(`HANDLER_ERROR: bad input ${at(throwsInRun, 2, 9)}`);
    }
    // Made in the library's own files (its stack is theirs): the message says what is wrong, no place.
    const made = run(['run', notASchema, 'run', '--no-workspace']);
    expect(made.stderr).toMatch(/^HANDLER_ERROR: Handler "run" of plugin "@t\/not-a-schema": its "input" is not a schema[^\n]*: 5\n$/);
  });

  it("a failure that quotes a plugin folder's text (a manifest's keys, a file's name) reaches the terminal without its escape sequences", async () => {
    // A key JSON.stringify leaves as it is: a C1 CSI (\u009b) and a right-to-left override.
    const manifest = await oneHandlerPlugin('c1-key', '@t/c1-key', 'export default async () => 1;\n');
    await writeFile(path.join(manifest, 'kb.plugin.json'), JSON.stringify({ id: '@t/c1-key', version: '1.0.0', handlers: { run: { entry: './run.mjs' } }, '\u009b2J\u202eyek': 1 }));
    const invalid = run(['run', manifest, 'run', '--no-workspace']);
    expect(invalid.status).toBe(1);
    expect(invalid.stderr).toContain('unknown key "\\x9b2J\\u202eyek"');
    // A file named like a manifest, in a folder that has none.
    const misnamed = path.join(root, 'escape-name');
    await mkdir(misnamed);
    await writeFile(path.join(misnamed, 'kb.plugin\x1b]0;owned\x07\x1b[2J.json'), '{}');
    // The handler ids of a manifest, listed when the command line names none.
    const keys = path.join(root, 'escape-keys');
    await mkdir(keys);
    await writeFile(path.join(keys, 'kb.plugin.json'), JSON.stringify({ id: 'k', version: '1.0.0', handlers: { 'a\x1b]52;c;b3duZWQ=\x07': { entry: './run.mjs' } } }));
    const failures = [invalid, run(['run', misnamed, 'run']), run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', misnamed]), run(['run', keys])];
    expect(failures.map((failure) => failure.status)).toEqual([1, 2, 2, 2]);
    for (const failure of failures) expect(failure.stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(failures[1]!.stderr).toContain('(it has kb.plugin\\x1b]0;owned\\x07\\x1b[2J.json: name it kb.plugin.json)');
    expect(failures[3]!.stderr).toContain('(the handlers of');
  });

  // SIGHUP (the terminal closed): before, Node's default action ended the process on the spot, the
  // workspace left behind. Now it ends by SIGHUP itself once done (its terminal may be gone: see endProcess).
  it.each([['SIGINT', 130], ['SIGHUP', 'SIGHUP']] as const)('%s aborts the execution, removes its workspace and ends (%s)', async (signal, end) => {
    const workspaces = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-sigint-'));
    try {
      const child = spawn(process.execPath, [cli, 'run', fixturePlugins.basic, 'respects-signal', '--workspace-root', workspaces, '--logs'], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, endedBy) => resolve(code ?? endedBy)));
      // Once its workspace exists, the execution is running.
      await waitFor(async () => (await readdir(workspaces)).some((name) => name.startsWith('kbx-')), 15_000);
      child.kill(signal);
      expect(await exited, stderr).toBe(end);
      expect(stderr).toMatch(/ABORTED: /);
      expect(await readdir(workspaces)).toEqual([]);
    } finally {
      await rm(workspaces, { recursive: true, force: true });
    }
  });

  it('a SIGINT seen only after an in-process handler that blocked the event loop had returned stops nothing: its result printed, exit 0, with a workspace or without', async () => {
    const workspaces = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-sigint-late-'));
    try {
      for (const where of [['--workspace-root', workspaces], ['--no-workspace']]) {
        const marker = path.join(root, `spinning-${where[0]}`);
        // Asleep (Atomics.wait): the signal comes while the loop is blocked, however it is blocked.
        const input = JSON.stringify({ marker, ms: 1000, asleep: true });
        const child = spawn(process.execPath, [cli, 'run', blocking, 'spin', '--input', input, ...where], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
        // Sent while the handler blocks the loop (it wrote its marker first): seen after it returns.
        await waitFor(() => existsSync(marker), 15_000);
        child.kill('SIGINT');
        // Before: 130 with a workspace (its release gave the signal a turn), 0 without.
        expect(await exited, where[0]).toBe(0);
        expect(JSON.parse(stdout)).toBe('spun');
        // The same for a handler that failed: its HANDLER_ERROR's exit code, 1 (it was 130 with a workspace).
        const failing = spawn(process.execPath, [cli, 'run', blocking, 'spin', '--input', JSON.stringify({ marker: `${marker}-throws`, ms: 1000, throws: true, asleep: true }), ...where], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
        const failed = new Promise<number | null>((resolve) => failing.once('exit', (code) => resolve(code)));
        await waitFor(() => existsSync(`${marker}-throws`), 15_000);
        failing.kill('SIGINT');
        expect(await failed, where[0]).toBe(1);
      }
      expect(await readdir(workspaces)).toEqual([]);
    } finally {
      await rm(workspaces, { recursive: true, force: true });
    }
  });

  it('an in-process handler that keeps the event loop blocked past its time limit: TIMEOUT said (stdout too with --json), its workspace removed, the process ended by SIGKILL, a SIGINT meanwhile or not', async () => {
    const workspaces = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-blocked-'));
    try {
      for (const [json, keep] of [[false, false], [true, false], [false, true], [true, true]]) {
        const marker = path.join(root, `blocked-${json}-${keep}`);
        // The first spins (CPU-bound code, beside the watching thread); the others block the loop asleep, which
        // the watchdog sees alike (the loop's beat stops), without a core burnt for the 2.3 s to SIGKILL.
        const asleep = json || keep;
        const args = ['run', blocking, 'spin', '--input', JSON.stringify({ marker, ms: 120_000, asleep }), '--timeout', '300', '--workspace-root', workspaces, ...(json ? ['--json'] : []), ...(keep ? ['--keep-workspace'] : [])];
        const child = spawn(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        const exited = new Promise<string | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
        await waitFor(() => existsSync(marker), 15_000);
        expect((await readdir(workspaces)).some((name) => name.startsWith('kbx-'))).toBe(true);
        child.kill('SIGINT');
        expect(await exited).toBe('SIGKILL');
        expect(stderr).toMatch(/^TIMEOUT: Handler "spin" of plugin "@cli-test\/blocking" keeps the event loop blocked past its time limit of 300 ms, which the in-process backend cannot stop/m);
        const left = await readdir(workspaces);
        // The details and meta of a TIMEOUT as the backend's own carry them (docs/errors.md): they had only timeoutMs, and no executionId.
        if (json) {
          expect(JSON.parse(stdout)).toMatchObject({
            ok: false,
            error: { code: 'TIMEOUT', details: { timeoutMs: 300, pluginId: '@cli-test/blocking', handlerId: 'spin' } },
            meta: { executionId: expect.stringMatching(/^[0-9a-f-]{36}$/), backend: 'in-process', pluginId: '@cli-test/blocking', handlerId: 'spin', timeoutMs: 300, artifacts: [] },
          });
          // Every field of a result's meta (they had no startedAt nor durations): ended past the limit and the grace.
          const { meta } = JSON.parse(stdout);
          expect(meta.startedAt).toBeGreaterThan(Date.now() - 120_000);
          expect(meta.runMs).toBeGreaterThanOrEqual(300 + 2000);
          expect(meta.durationMs).toBe(meta.queueWaitMs + meta.runMs);
        } else expect(stdout).toBe('');
        // A kept workspace is named in the JSON too, as a result's would be.
        if (json) expect(JSON.parse(stdout).meta.workspaceDir).toBe(keep ? path.join(workspaces, left[0]!) : undefined);
        if (keep) {
          expect(left).toHaveLength(1);
          expect(stderr).toContain(`workspace kept at ${path.join(workspaces, left[0]!)}\n`);
          await rm(path.join(workspaces, left[0]!), { recursive: true, force: true });
        } else expect(left).toEqual([]);
      }
    } finally {
      await rm(workspaces, { recursive: true, force: true });
    }
  });

  it('code an in-process handler left that blocks the event loop as the command ends (after its result) ends the process, said, instead of hanging it', () => {
    const result = spawnSync(process.execPath, [cli, 'run', blocking, 'leftover', '--no-workspace', '--timeout', '60000'], { env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 60_000 });
    // Before, nothing watched the loop once the result was in: the command hung until spawnSync's own timeout.
    expect(result.signal, result.stderr).toBe('SIGKILL');
    expect(JSON.parse(result.stdout)).toBe('left');
    expect(result.stderr).toMatch(/^ERROR: handler "leftover" of plugin "@cli-test\/blocking" is over \(its result is said\), but a timer or callback it left keeps the event loop blocked \(over 2000 ms\) as the command ends: the process was ended$/m);
  }, 70_000);

  it('a handler that returned in time is not ended by the loop watchdog while the CLI prints its large result (seconds of the CLI\'s own work)', async () => {
    const out = path.join(root, 'bytes-result.json');
    const { openSync, closeSync, statSync } = await import('node:fs');
    const fd = openSync(out, 'w');
    try {
      // 2 s: room for the handler's 30 MB and its copy on a loaded machine (their first touch of fresh memory took 0.2 s here
      // quiet, and over 600 ms in CI beside the other lanes), and a watchdog left armed past the handler's return ends the
      // process once the loop is blocked for 2 s + BLOCKED_GRACE_MS: printing 30 million numbers blocks it about 10 s here
      // (checked so: without the watchdog's returned(), this test fails with SIGKILL).
      const result = spawnSync(process.execPath, [cli, 'run', blocking, 'bytes', '--input', '{"n":30000000}', '--timeout', '2000', '--no-workspace'], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', fd, 'pipe'], encoding: 'utf8', timeout: 120_000 });
      expect(result.signal, result.stderr).toBeNull();
      expect(result.status, result.stderr).toBe(0);
    } finally {
      closeSync(fd);
    }
    expect(statSync(out).size).toBeGreaterThan(30_000_000);
  }, 120_000);

  it("runs under Node's permission model without --allow-worker (the loop's watching thread is not started there)", () => {
    const flag = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
    const result = spawnSync(process.execPath, [flag, '--allow-fs-read=*', '--allow-fs-write=*', cli, 'run', fixturePlugins.basic, 'echo', '--input', '"hi"', '--no-workspace'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toBe('hi');
  });

  it('a second SIGINT while the first one cleans up changes nothing: exit 130, the workspace removed', async () => {
    const workspaces = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-sigint2-'));
    try {
      const args = [cli, 'run', fixturePlugins.basic, 'never-resolves', '--backend', 'subprocess', '--workspace-root', workspaces];
      const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        // The result is out: the backend is shutting down now (its child killed, the workspace removed).
        if (stderr.includes('ABORTED') && !child.killed) child.kill('SIGINT');
      });
      // When the execution never started, cleanup is quick: the second SIGINT may land once the
      // run's listeners are gone (while the output drains), and kill the process by SIGINT, which
      // a shell reports as 130 too. What matters is that nothing is left behind.
      const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(signal === 'SIGINT' ? 130 : code)));
      await waitFor(async () => (await readdir(workspaces)).some((name) => name.startsWith('kbx-')), 15_000);
      process.kill(child.pid!, 'SIGINT');
      expect(await exited, stderr).toBe(130);
      expect(await readdir(workspaces)).toEqual([]);
    } finally {
      await rm(workspaces, { recursive: true, force: true });
    }
  });

  it('SIGINT, SIGTERM or SIGHUP while --input @- waits for standard input ends the command (130, 143, by SIGHUP): nothing ran', async () => {
    const workspaces = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-stdin-'));
    try {
      for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 'SIGHUP']] as const) {
        // Standard input stays open, with nothing written: a user who forgot to pipe the input.
        const child = spawn(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--input', '@-', '--workspace-root', workspaces], { env: { PATH: process.env.PATH ?? '' }, stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        const exited = new Promise<number | string | null>((resolve) => child.once('exit', (exitCode, endedBy) => resolve(exitCode ?? endedBy)));
        // Once the CLI has loaded its modules and reached the read (its listeners are in place).
        await readingStandardInput(child.pid!);
        child.kill(signal);
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        expect(await exited, signal).toBe(code);
        clearTimeout(killer);
        expect(stdout).toBe('');
        expect(await readdir(workspaces)).toEqual([]);
      }
    } finally {
      await rm(workspaces, { recursive: true, force: true });
    }
  });

  it('worker: SIGTERM, SIGINT or SIGHUP while --grant @- waits for standard input is its first signal with nothing to drain (0, by SIGHUP), not a failure', async () => {
    for (const [signal, code] of [['SIGTERM', 0], ['SIGINT', 0], ['SIGHUP', 'SIGHUP']] as const) {
      // No server is reached: it stops before it connects.
      const child = spawn(process.execPath, [cli, 'worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, '--grant', '@-'], { env: { PATH: process.env.PATH ?? '' }, stdio: ['pipe', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | string | null>((resolve) => child.once('exit', (exitCode, endedBy) => resolve(exitCode ?? endedBy)));
      await readingStandardInput(child.pid!);
      child.kill(signal);
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      // Before: "ERROR: stopped by SIGTERM while reading standard input", exit 1.
      expect(await exited, `${signal}: ${stderr}`).toBe(code);
      clearTimeout(killer);
      expect(stderr).toBe(`${signal}: stopped while --grant @- waited for standard input, before the worker joined its pool: nothing ran\n`);
    }
  });

  it('an input file that starts with a byte-order mark (Notepad, PowerShell) reads as its JSON', async () => {
    const file = path.join(root, 'bom.json');
    await writeFile(file, '\ufeff{"bom":1}');
    const fromFile = run(['run', fixturePlugins.basic, 'echo', '--input', `@${file}`, '--no-workspace']);
    expect(fromFile.stderr).toBe('');
    expect(JSON.parse(fromFile.stdout)).toEqual({ bom: 1 });
    const piped = spawnSync(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--input', '@-', '--no-workspace'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, input: '\ufeff[1]', timeout: 30_000 });
    expect(JSON.parse(piped.stdout)).toEqual([1]);
  });

  it('an input file in UTF-16 (Windows PowerShell\'s `>`, Notepad\'s "Unicode") reads as its JSON; one that is not UTF-8 (Latin-1) is refused where, not passed on as U+FFFD', async () => {
    const json = '{"name":"José"}\r\n';
    const little = path.join(root, 'utf16le.json');
    await writeFile(little, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(json, 'utf16le')]));
    const big = path.join(root, 'utf16be.json');
    await writeFile(big, Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(json, 'utf16le').swap16()]));
    for (const file of [little, big]) {
      // Before: "is not valid JSON: unexpected text at line 1, column 1".
      const read = run(['run', fixturePlugins.basic, 'echo', '--input', `@${file}`, '--no-workspace']);
      expect(read.stderr).toBe('');
      expect(JSON.parse(read.stdout)).toEqual({ name: 'José' });
    }
    const latin1 = path.join(root, 'latin1.json');
    await writeFile(latin1, Buffer.from('{\n  "name": "José"\n}', 'latin1'));
    // Before: exit 0, the handler given "Jos\ufffd".
    const refused = run(['run', fixturePlugins.basic, 'echo', '--input', `@${latin1}`, '--no-workspace']);
    expect(refused.status).toBe(2);
    expect(refused.stdout).toBe('');
    expect(refused.stderr.split('\n')[0]).toBe(`--input @${latin1}: cannot read ${latin1}: it is not UTF-8 text (line 2, column 15): save it as UTF-8`);
    const piped = spawnSync(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--input', '@-', '--no-workspace'], { env: { PATH: process.env.PATH ?? '' }, input: Buffer.from('"José"', 'latin1'), timeout: 30_000 });
    expect(piped.status).toBe(2);
    expect(piped.stderr.toString().split('\n')[0]).toBe('--input @-: cannot read standard input: it is not UTF-8 text (line 1, column 5): save it as UTF-8');
  });

  it('a --platform module that throws or does not parse exits 2 naming the flag, the module and where', async () => {
    const throws = path.join(root, 'platform-throws.mjs');
    const broken = path.join(root, 'platform-broken.mjs');
    await writeFile(throws, 'throw new Error("platform boom");\n');
    await writeFile(broken, 'syntax error here(\n');
    const thrown = run(['run', fixturePlugins.basic, 'echo', '--platform', throws, '--no-workspace']);
    expect(thrown.status).toBe(2);
    expect(thrown.stderr.split('\n')[0]).toBe(`--platform: ${throws} failed to load: Error: platform boom (at ${pathToFileURL(throws).href}:1:7)`);
    const unparsed = run(['run', fixturePlugins.basic, 'echo', '--platform', broken, '--no-workspace']);
    expect(unparsed.status).toBe(2);
    expect(unparsed.stderr.split('\n')[0]).toMatch(new RegExp(`^--platform: ${broken.replaceAll('.', '\\.')} failed to load: SyntaxError: Unexpected identifier`));
    // Node names no file for an ES module's SyntaxError: no place of Node's own is named instead.
    expect(unparsed.stderr.split('\n')[0]).not.toContain('(at ');
    const brokenCjs = path.join(root, 'platform-broken.cjs');
    await writeFile(brokenCjs, 'module.exports = {\n  a: (\n');
    const cjs = run(['run', fixturePlugins.basic, 'echo', '--platform', brokenCjs, '--no-workspace']);
    expect(cjs.stderr.split('\n')[0]).toBe(`--platform: ${brokenCjs} failed to load: SyntaxError: Unexpected end of input (at ${brokenCjs}:3)`);
  });

  it('a --platform module with no `platform` or default export exits 2 saying what it exports instead (a near name, or nothing)', async () => {
    const misspelt = path.join(root, 'platform-misspelt.mjs');
    const empty = path.join(root, 'platform-empty.mjs');
    await writeFile(misspelt, 'export const platfrom = {};\nexport const store = new Map();\n');
    await writeFile(empty, 'const platform = {};\n');
    const near = run(['run', fixturePlugins.basic, 'echo', '--platform', misspelt, '--no-workspace']);
    expect(near.status).toBe(2);
    const refused = `--platform: ${misspelt} must export \`platform\` (or a default export): an object of services, or a function that returns one`;
    expect(near.stderr.split('\n')[0]).toBe(`${refused} (it exports \`platfrom\`, \`store\`; rename \`platfrom\` to \`platform\`)`);
    const none = run(['run', fixturePlugins.basic, 'echo', '--platform', empty, '--no-workspace']);
    expect(none.status).toBe(2);
    expect(none.stderr.split('\n')[0]).toBe(`--platform: ${empty} must export \`platform\` (or a default export): an object of services, or a function that returns one (it exports nothing)`);
  });

  it('a reader of stdout that goes away (| head -c 1) is not a failure: the exit code stays the command\'s own', async () => {
    const input = path.join(root, 'big-input.json');
    await writeFile(input, JSON.stringify({ text: 'x'.repeat(200_000) }));
    for (const backend of ['in-process', 'worker-pool']) {
      const args = [cli, 'run', fixturePlugins.basic, 'echo', '--input', `@${input}`, '--backend', backend, '--no-workspace'];
      const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      // The reading end is gone before the command writes its result.
      child.stdout.destroy();
      const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
      expect(code, `${backend}: ${stderr}`).toBe(0);
      expect(stderr).not.toMatch(/EPIPE/);
    }
  });

  it('init creates a plugin that runs as created on every backend, and whose own test passes; the command it prints runs it from the project', async () => {
    // The project around the plugin has the umbrella installed (a link to this package and its
    // bin, as a package manager would make), so that the scaffold's own test resolves it.
    const parent = await mkdtemp(path.join(os.tmpdir(), 'kb-init-'));
    try {
      await mkdir(path.join(parent, 'node_modules', '@kb-labs'), { recursive: true });
      await mkdir(path.join(parent, 'node_modules', '.bin'));
      await writeFile(path.join(parent, 'package.json'), JSON.stringify({ name: 'host', version: '0.0.0', private: true }));
      await symlink(path.resolve(path.dirname(cli), '..'), path.join(parent, 'node_modules', '@kb-labs', 'plugin-execution'), 'dir');
      await symlink(path.join('..', '@kb-labs', 'plugin-execution', 'dist', 'cli.js'), path.join(parent, 'node_modules', '.bin', 'kb-plugin-exec'));
      const dir = path.join(parent, 'greeter');
      const created = spawnSync(process.execPath, [cli, 'init', 'greeter'], { cwd: parent, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
      expect(created.status, created.stderr).toBe(0);
      expect((await readdir(dir)).sort()).toEqual(['hello.mjs', 'hello.test.mjs', 'kb.plugin.json', 'package.json']);
      // Of what the project installed (the umbrella alone, as pnpm lays it out): the manifest's
      // $schema is the file, from the plugin folder; the handler's types, and its test's, check against it.
      const manifest = JSON.parse(await readFile(path.join(dir, 'kb.plugin.json'), 'utf8')) as { $schema: string };
      expect(manifest.$schema).toBe('../node_modules/@kb-labs/plugin-execution/dist/kb.plugin.schema.json');
      expect(JSON.parse(await readFile(path.resolve(dir, manifest.$schema), 'utf8'))).toMatchObject({ title: expect.stringContaining('kb.plugin.json') });
      const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
      const checked = spawnSync(process.execPath, [tsc, '--noEmit', '--allowJs', '--checkJs', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', path.dirname(path.dirname(createRequire(import.meta.url).resolve('@types/node/package.json'))), 'hello.mjs', 'hello.test.mjs'], { cwd: dir, encoding: 'utf8' });
      expect(checked.stdout + checked.stderr).toBe('');
      expect(checked.status).toBe(0);
      // What it says to run, as typed in the project: the CLI is in node_modules/.bin, not on PATH
      // (npm_config_yes=false: npx runs the project's bin or fails, never fetches a package).
      const runIt = /^Run it: +(.+)$/m.exec(created.stdout)?.[1];
      expect(runIt, created.stdout).toBe(`npx kb-plugin-exec run greeter hello --input '{"name":"Ada"}'`);
      // Installed above the plugin folder: nothing to install in it.
      expect(/^Test it: +(.+)$/m.exec(created.stdout)?.[1]).toBe('cd greeter && npm test');
      const printed = spawnSync('sh', ['-c', runIt!], { cwd: parent, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', npm_config_yes: 'false' }, timeout: 60_000 });
      expect(printed.status, printed.stderr).toBe(0);
      expect(JSON.parse(printed.stdout)).toEqual({ message: 'Hello, Ada!' });
      for (const backend of ['in-process', 'worker-pool', 'subprocess']) {
        const result = run(['run', dir, 'hello', '--backend', backend, '--input', '{"name":"Ada"}', '--no-workspace']);
        expect(result.status, `${backend}: ${result.stderr}`).toBe(0);
        expect(JSON.parse(result.stdout)).toEqual({ message: 'Hello, Ada!' });
      }
      const own = spawnSync(process.execPath, ['--test'], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 60_000 });
      expect(own.status, own.stdout + own.stderr).toBe(0);
      const again = run(['init', dir]);
      expect(again.status).toBe(2);
      expect(again.stderr).toContain('exists and is not empty');
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
    // Eight Node processes one after the other, tsc among them: 5 s on a quiet machine, past 30 s with a third of a core.
  }, 120_000);

  it("an in-process handler's process.exit(0) (or 2, the usage error's code) is a failure: WORKER_CRASHED, exit 1, the workspace removed; so is an uncaught exception from its timer", async () => {
    const workspaces = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-exit-'));
    try {
      for (const code of [0, 2]) {
        const plain = run(['run', fixturePlugins.hostile, 'exit', '--input', `{"code":${code}}`, '--workspace-root', workspaces]);
        expect(plain.status, plain.stderr).toBe(1);
        expect(plain.stdout).toBe('');
        expect(plain.stderr).toMatch(new RegExp(`^WORKER_CRASHED: handler "exit" of plugin "@conformance/hostile" called process\\.exit\\(${code}\\) while it ran in-process`));
        expect(await readdir(workspaces)).toEqual([]);
      }
      const asJson = run(['run', fixturePlugins.hostile, 'exit', '--input', '{"code":0}', '--workspace-root', workspaces, '--json']);
      expect(asJson.status, asJson.stderr).toBe(1);
      expect(JSON.parse(asJson.stdout)).toMatchObject({ ok: false, error: { code: 'WORKER_CRASHED', details: { reason: 'exit', exitCode: 0, handlerId: 'exit' } }, meta: { backend: 'in-process', handlerId: 'exit' } });
      expect(await readdir(workspaces)).toEqual([]);
      const kept = run(['run', fixturePlugins.hostile, 'exit', '--input', '{"code":0}', '--workspace-root', workspaces, '--json', '--keep-workspace']);
      const keptDir = (JSON.parse(kept.stdout) as { meta: { workspaceDir: string } }).meta.workspaceDir;
      // Marked kept, as one kept after a result: a sweep leaves it (before, it was swept).
      expect((await readdir(workspaces)).sort()).toEqual([path.basename(keptDir), `${path.basename(keptDir)}.kept`]);
      expect(JSON.parse(run(['sweep', '--workspace-root', workspaces]).stdout)).toMatchObject({ removed: [], kept: [keptDir] });
      // The root as a file: URL, as run and worker take it.
      expect(JSON.parse(run(['sweep', '--workspace-root', pathToFileURL(workspaces).href]).stdout)).toMatchObject({ removed: [], kept: [keptDir] });
      await rm(keptDir, { recursive: true });
      await rm(`${keptDir}.kept`);
      const uncaught = run(['run', fixturePlugins.hostile, 'throw-in-timer', '--workspace-root', workspaces]);
      expect(uncaught.status).toBe(1);
      expect(uncaught.stderr).toContain('WORKER_CRASHED: an uncaught exception (Node prints it with its stack) ended the CLI\'s process while handler "throw-in-timer"');
      expect(await readdir(workspaces)).toEqual([]);
      const rejected = run(['run', fixturePlugins.hostile, 'unhandled-rejection', '--workspace-root', workspaces, '--json']);
      expect(rejected.status).toBe(1);
      expect(rejected.stderr).toContain('WORKER_CRASHED: an unhandled promise rejection (Node prints it with its stack) ended the CLI\'s process while handler "unhandled-rejection"');
      expect(JSON.parse(rejected.stdout)).toMatchObject({ ok: false, error: { code: 'WORKER_CRASHED', details: { reason: 'unhandled-rejection' } } });
      expect(await readdir(workspaces)).toEqual([]);
    } finally {
      await rm(workspaces, { recursive: true, force: true });
    }
  });

  it('exits once the result is out, even when an in-process handler it timed out still has a timer pending', () => {
    // The handler would resolve 20 s later, ignoring its signal: in-process cannot stop it.
    const started = performance.now();
    const { status, stderr } = spawnSync(process.execPath, [cli, 'run', fixturePlugins.hostile, 'resolves-late', '--input', '{"ms":20000}', '--timeout', '300', '--no-workspace'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '' },
      timeout: 15_000,
    });
    expect(status, `still running after ${Math.round(performance.now() - started)} ms`).toBe(1);
    expect(stderr).toMatch(/^TIMEOUT: /);
  });

  it('usage errors exit 2 with the synopsis and where the options are listed', async () => {
    const bad = run(['run', fixturePlugins.basic]);
    expect(bad.status).toBe(2);
    // With the handlers it could have named (before: only the synopsis).
    expect(bad.stderr.split('\n')[0]).toMatch(new RegExp(`^run needs <plugin-dir> and <handler> \\(the handlers of \\S+: echo, echo-named, bytes, .*, …\\)$`));
    expect(run(['run']).stderr.split('\n')[0]).toBe('run needs <plugin-dir> and <handler>');
    expect(bad.stderr).toContain('Usage:\n  kb-plugin-exec run <plugin-dir> <handler> [options]');
    expect(bad.stderr).toContain('kb-plugin-exec --help lists the options.');
    // Not the whole help: the error stays on screen.
    expect(bad.stderr).not.toContain('Options for run:');
    const badWorker = run(['worker', '--plugins', fixturePlugins.basic]);
    expect(badWorker.status).toBe(2);
    expect(badWorker.stderr).toContain('kb-plugin-exec worker --help lists the options.');
    // No command: a usage error like the others (before, the help on stdout, exit 2).
    const bare = run([]);
    expect(bare.status).toBe(2);
    expect(bare.stdout).toBe('');
    expect(bare.stderr.split('\n')[0]).toBe('give a command: run, validate, init, sweep or worker');
    expect(bare.stderr).toContain('kb-plugin-exec --help lists the options.');
    // `help` is what a newcomer types: the help, not "unknown command".
    const help = run(['help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('Options for run:');
    expect(run(['help', 'worker']).stdout).toMatch(/^Usage:\n {2}kb-plugin-exec worker --nats <url>/);
    // Help on a command that is not one: said so (before: the whole help, exit 0).
    for (const args of [['help', 'rnu'], ['rnu', '--help']]) {
      const unknown = run(args);
      expect(unknown.status).toBe(2);
      expect(unknown.stdout).toBe('');
      expect(unknown.stderr.split('\n')[0]).toBe('unknown command "rnu"; did you mean "run"?');
    }
    const badJson = run(['run', fixturePlugins.basic, 'echo', '--input', '{nope']);
    expect(badJson.status).toBe(2);
    expect(badJson.stderr).toMatch(/^--input is not valid JSON: [^\n]+ at line 1, column 2\n/);
    // A bare word the shell took the quotes off: how to keep them.
    expect(run(['run', fixturePlugins.basic, 'echo', '--input', 'Ada']).stderr).toMatch(/^--input is not valid JSON: unexpected text at line 1, column 1; a string goes in JSON quotes: --input '"Ada"'\n/);
    // From a file: which file, and where in it (line and column, the usual cause), none of its text quoted.
    const badFile = path.join(root, 'bad-input.json');
    await writeFile(badFile, '{"a":\n 1,\n "b": tru\n}');
    const fromFile = run(['run', fixturePlugins.basic, 'echo', '--input', `@${badFile}`]);
    expect(fromFile.status).toBe(2);
    expect(fromFile.stderr.startsWith(`--input (${badFile}) is not valid JSON: `)).toBe(true);
    expect(fromFile.stderr.split('\n')[0]).toMatch(/ at line 3, column 10$/);
    const emptyStdin = spawnSync(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--context', '@-'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, input: '', timeout: 30_000 });
    expect(emptyStdin.status).toBe(2);
    expect(emptyStdin.stderr).toMatch(/^--context \(standard input\) is not valid JSON: it is empty\n/);
    const contextNotObject = run(['run', fixturePlugins.basic, 'echo', '--context', 'requestId=1']);
    expect(contextNotObject.stderr).toMatch(/^--context is not valid JSON: unexpected text at line 1, column 1 \(--context is one JSON object, starting with "\{"\)\n/);
    // A plugin folder typed wrong is a usage error naming it (cli-plugin-paths.test.ts has more).
    const badPlugin = run(['run', root, 'echo']);
    expect(badPlugin.status).toBe(2);
    expect(badPlugin.stderr).toMatch(/^No kb.plugin.json in plugin folder /);
    const noFolder = run(['run', path.join(root, 'no-such-plugin'), 'echo']);
    expect(noFolder.status).toBe(2);
    expect(noFolder.stderr).toMatch(/^Plugin folder \S+no-such-plugin does not exist/);
    for (const flag of ['--input', '--backend', '--timeout']) {
      const noValue = run(['run', fixturePlugins.basic, 'echo', flag]);
      expect(noValue.status, flag).toBe(2);
      expect(noValue.stderr).toContain(`${flag} <value>' argument missing`);
    }
    const initOnFile = run(['init', cli]);
    expect(initOnFile.status).toBe(2);
    expect(initOnFile.stderr.split('\n')[0]).toMatch(/^init: \S+cli\.js is a file; give a new folder$/);
    if (process.platform === 'linux') {
      // A pseudo file system that refuses new entries with ENOENT: Node's recursive mkdir retried for ever.
      const underProc = spawnSync(process.execPath, [cli, 'init', '/proc/kb-init-never'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 10_000 });
      expect(underProc.status).toBe(2);
      expect(underProc.stderr.split('\n')[0]).toBe("init: cannot make /proc/kb-init-never: ENOENT: no such file or directory, mkdir '/proc/kb-init-never'; give a folder that can be made");
    }
    const typo = run(['run', fixturePlugins.basic, 'echo', '--inptu', '{}']);
    expect(typo.status).toBe(2);
    expect(typo.stderr.split('\n')[0]).toBe('unknown option --inptu; did you mean --input?');
    // An option with a word added (the API's unit, a file): the option it starts with.
    expect(run(['run', fixturePlugins.basic, 'echo', '--timeout-ms', '5']).stderr.split('\n')[0]).toBe('unknown option --timeout-ms; did you mean --timeout?');
    expect(run(['run', fixturePlugins.basic, 'echo', '--input-file', 'in.json']).stderr.split('\n')[0]).toBe('unknown option --input-file; did you mean --input?');
    expect(run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, '--drain-timeout-ms', '5']).stderr.split('\n')[0]).toBe('unknown option --drain-timeout-ms; did you mean --drain-timeout?');
    const workerTypo = run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugin', fixturePlugins.basic]);
    expect(workerTypo.status).toBe(2);
    expect(workerTypo.stderr.split('\n')[0]).toBe('unknown option --plugin; did you mean --plugins?');
    // An option of the other command is said as that.
    const workerFlagOnRun = run(['run', fixturePlugins.basic, 'echo', '--backend', 'queue', '--concurrency', '2']);
    expect(workerFlagOnRun.status).toBe(2);
    expect(workerFlagOnRun.stderr.split('\n')[0]).toBe('unknown option --concurrency: it is an option of `kb-plugin-exec worker`');
    expect(run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, '--input', '{}']).stderr.split('\n')[0]).toBe('unknown option --input: it is an option of `kb-plugin-exec run`');
    const queueWorker = run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, '--backend', 'queue']);
    expect(queueWorker.status).toBe(2);
    expect(queueWorker.stderr.split('\n')[0]).toBe('--backend must be one of in-process, worker-pool, subprocess, got "queue" (a worker runs what it takes from the queue here, on one of these)');
    expect(run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, '--backend', 'subproces']).stderr.split('\n')[0]).toBe(
      '--backend must be one of in-process, worker-pool, subprocess, got "subproces"; did you mean "subprocess"?',
    );
    // Every flag is checked before the worker tries to join its pool (here: a server that is not there).
    const badDrain = run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, '--drain-timeout', 'abc']);
    expect(badDrain.status).toBe(2);
    expect(badDrain.stderr.split('\n')[0]).toBe('--drain-timeout must be a whole number of ms from 0 to 2147483647, got "abc"');
    // What drain() takes: past Node's longest timer, a timer would fire at once and stop the running work.
    for (const value of ['Infinity', '2147483648', '-1', '1.5', ' 20']) {
      const drain = run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, `--drain-timeout=${value}`]);
      expect(drain.status, value).toBe(2);
      expect(drain.stderr.split('\n')[0]).toBe(`--drain-timeout must be a whole number of ms from 0 to 2147483647, got "${value}"`);
    }
    // A list with an empty entry (a trailing comma): named, as a list of URLs.
    for (const command of [['worker', '--plugins', fixturePlugins.basic], ['run', fixturePlugins.basic, 'echo', '--backend', 'queue', '--no-workspace']]) {
      const trailing = run([...command, '--nats', 'nats://127.0.0.1:1,']);
      expect(trailing.status).toBe(2);
      expect(trailing.stderr.split('\n')[0]).toBe('--nats: "nats://127.0.0.1:1," has an empty entry: give server URLs separated by commas (nats://a:4222,nats://b:4222)');
    }
    // Digits only, as --timeout: Number() takes each of these, as another number than was typed or meant.
    for (const value of ['0x10', '1e1', '0b11', '+3', '3.0', ' 2', '0', '-1']) {
      const concurrency = run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, `--concurrency=${value}`]);
      expect(concurrency.status, value).toBe(2);
      expect(concurrency.stderr.split('\n')[0]).toBe(`--concurrency must be a positive integer, got "${value}"`);
    }
    // A workspace root where nothing can be made (a file): before, the worker joined its pool,
    // said "ready" and failed each task it took at once, so most of the pool's tasks.
    const fileRoot = run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, '--workspace-root', cli]);
    expect(fileRoot.status).toBe(2);
    expect(fileRoot.stderr.split('\n')[0]).toBe(`--workspace-root: no workspace can be made there: Cannot create workspace root ${cli}: it is not a directory`);
    expect(fileRoot.stdout).toBe('');
    // A server that is not there: what kind of problem it is, where there is no execution error code.
    const noServer = run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, '--backend', 'in-process']);
    expect(noServer.status).toBe(1);
    // (As "CODE: message", as every failure of the command is said: worker --help lists the codes.)
    expect(noServer.stderr).toMatch(/^QUEUE_SERVER_UNREACHABLE: The worker could not connect to the NATS server \(nats:\/\/127\.0\.0\.1:1\)/);
    expect(run(['worker', '--help']).stdout).toContain('Exits 2 for a usage error, and 1 when it cannot start: "<CODE>: <message>" on stderr, where a\nNATS server it cannot use is QUEUE_SERVER_UNREACHABLE');
    const prefixWithoutQueue = run(['run', fixturePlugins.basic, 'echo', '--pool', 'p', '--prefix', 'x']);
    expect(prefixWithoutQueue.status).toBe(2);
    expect(prefixWithoutQueue.stderr.split('\n')[0]).toBe('--pool and --prefix are for --backend queue');
    const badBackend = run(['run', fixturePlugins.basic, 'echo', '--backend', 'workerpool']);
    expect(badBackend.status).toBe(2);
    expect(badBackend.stderr.split('\n')[0]).toBe('--backend must be one of in-process, worker-pool, subprocess, queue, got "workerpool"; did you mean "worker-pool"?');
    const badGrant = run(['run', fixturePlugins.basic, 'echo', '--grant', '{"platfrm":{}}']);
    expect(badGrant.status).toBe(2);
    expect(badGrant.stderr.split('\n').slice(0, 2)).toEqual(['--grant is not a permissions object ({ platform, fs, env, network, childProcess }):', expect.stringContaining('unknown key "platfrm"; did you mean "platform"?')]);
    const badCommand = run(['rnu', fixturePlugins.basic, 'echo']);
    expect(badCommand.status).toBe(2);
    expect(badCommand.stderr.split('\n')[0]).toBe('unknown command "rnu"; did you mean "run"?');
    const inputWithoutFlag = run(['run', fixturePlugins.basic, 'echo', '{"name":"Ada"}']);
    expect(inputWithoutFlag.status).toBe(2);
    expect(inputWithoutFlag.stderr.split('\n')[0]).toBe('run <plugin-dir> <handler> takes no more arguments, got "{\\"name\\":\\"Ada\\"}"; an input goes after --input');
    const twoFolders = run(['init', path.join(root, 'one'), path.join(root, 'two')]);
    expect(twoFolders.status).toBe(2);
    expect(twoFolders.stderr.split('\n')[0]).toMatch(/^init <dir> takes no more arguments, got "\S+two"$/);
    const keepNone = run(['run', fixturePlugins.basic, 'echo', '--no-workspace', '--keep-workspace']);
    expect(keepNone.status).toBe(2);
    expect(keepNone.stderr.split('\n')[0]).toBe('--no-workspace runs without a workspace: it does not go with --keep-workspace');
    const rootNone = run(['run', fixturePlugins.basic, 'echo', '--no-workspace', '--keep-workspace', '--workspace-root', root]);
    expect(rootNone.stderr.split('\n')[0]).toBe('--no-workspace runs without a workspace: it does not go with --keep-workspace or --workspace-root');
    // A timeout past Node's longest timer is the user's typo, not a failed execution.
    const hugeTimeout = run(['run', fixturePlugins.basic, 'echo', '--timeout', '99999999999']);
    expect(hugeTimeout.status).toBe(2);
    expect(hugeTimeout.stderr.split('\n')[0]).toBe("--timeout must be a whole number of milliseconds from 1 to 2147483647 (Node's longest timer), got \"99999999999\"");
    // Number() would take these as 1.5, 16 and 1000 ms.
    for (const odd of ['1.5', '0x10', '1e3', '-5']) {
      const refused = run(['run', fixturePlugins.basic, 'echo', `--timeout=${odd}`]);
      expect(refused.status, odd).toBe(2);
      expect(refused.stderr.split('\n')[0]).toBe(`--timeout must be a whole number of milliseconds from 1 to 2147483647 (Node's longest timer), got "${odd}"`);
    }
    // Written apart, a negative number is the flag's value too (parseArgs alone calls it "ambiguous").
    const negative = run(['run', fixturePlugins.basic, 'echo', '--timeout', '-5']);
    expect(negative.status).toBe(2);
    expect(negative.stderr.split('\n')[0]).toBe(`--timeout must be a whole number of milliseconds from 1 to 2147483647 (Node's longest timer), got "-5"`);
    // After --, words are positionals as typed.
    const afterDashes = run(['run', fixturePlugins.basic, 'echo', '--', '--timeout', '-5']);
    expect(afterDashes.stderr.split('\n')[0]).toBe('run <plugin-dir> <handler> takes no more arguments, got "--timeout" "-5"');
    // A flag followed by another flag, not a number: its value is missing, not the next flag.
    const missing = run(['run', fixturePlugins.basic, 'echo', '--timeout', '--no-workspace']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("Did you forget to specify the option argument for '--timeout'?");
    const noFileName = run(['run', fixturePlugins.basic, 'echo', '--input', '@']);
    expect(noFileName.status).toBe(2);
    expect(noFileName.stderr.split('\n')[0]).toBe('--input @: no file name after the @ (@<file> reads a file, @- standard input)');
    const noInputFile = run(['run', fixturePlugins.basic, 'echo', '--input', '@no-such-input.json']);
    expect(noInputFile.status).toBe(2);
    expect(noInputFile.stderr).toMatch(/^--input @no-such-input\.json: cannot read \S+no-such-input\.json: no such file/);
    // A file with no end (before: ~600 MB read, then "Invalid string length").
    const endless = run(['run', fixturePlugins.basic, 'echo', '--input', '@/dev/zero']);
    expect(endless.status).toBe(2);
    expect(endless.stderr.split('\n')[0]).toMatch(/^--input @\/dev\/zero: cannot read \/dev\/zero: it is larger than \d+ bytes, the longest string Node makes$/);
  }, 120_000); // Some forty CLI processes, one after another: ~10 s on a quiet machine, over 30 s on a loaded one.

  it('a flag of one value given twice, or two flags reading standard input, is a usage error (the last was taken without a word)', () => {
    const twice = run(['run', fixturePlugins.basic, 'echo', '--input', '"first"', '--input', '"second"', '--no-workspace']);
    expect(twice.status).toBe(2);
    expect(twice.stderr.split('\n')[0]).toBe('--input is given more than once: give it once');
    const stdin = run(['run', fixturePlugins.basic, 'echo', '--input', '@-', '--grant', '@-', '--no-workspace']);
    expect(stdin.status).toBe(2);
    expect(stdin.stderr.split('\n')[0]).toBe('--input and --grant both read standard input (@-), which is read once: give one of them a file (@<file>) or the text itself');
    const worker = run(['worker', '--nats', 'nats://127.0.0.1:1', '--pool', 'a', '--pool', 'b', '--plugins', fixturePlugins.basic]);
    expect(worker.status).toBe(2);
    expect(worker.stderr.split('\n')[0]).toBe('--pool is given more than once: give it once');
    // --plugins takes several, repeated or listed.
    expect(run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, '--plugins', fixturePlugins.basic, '--pool', '']).stderr.split('\n')[0]).toBe('--pool needs a value, got an empty string');
  });

  it('an empty flag value is a usage error naming the flag, not the default; --context must be an object', () => {
    const runFlags = ['--backend', '--nats', '--pool', '--input', '--context', '--grant', '--platform', '--timeout', '--workspace-root'];
    for (const flag of runFlags) {
      const empty = run(['run', fixturePlugins.basic, 'echo', flag, '', '--no-workspace']);
      expect(empty.status, flag).toBe(2);
      expect(empty.stderr.split('\n')[0]).toBe(`${flag} needs a value, got an empty string`);
    }
    const sweep = run(['sweep', '--workspace-root', '']);
    expect(sweep.stderr.split('\n')[0]).toBe('--workspace-root needs a value, got an empty string');
    // Checked before the worker tries to join its pool (a server that is not there).
    for (const flag of ['--concurrency', '--pool', '--prefix', '--workspace-root', '--id', '--drain-timeout', '--backend']) {
      const empty = run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, flag, '']);
      expect(empty.status, flag).toBe(2);
      expect(empty.stderr.split('\n')[0]).toBe(`${flag} needs a value, got an empty string`);
    }
    expect(run(['worker', '--nats', '', '--plugins', fixturePlugins.basic]).stderr.split('\n')[0]).toBe('--nats needs a value, got an empty string');
    expect(run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, '--plugins', '']).stderr.split('\n')[0]).toBe('--plugins needs a value, got an empty string');
    for (const [value, got] of [['null', 'null'], ['[]', 'an array'], ['"cli"', 'string']]) {
      const context = run(['run', fixturePlugins.basic, 'context', '--context', value!, '--no-workspace']);
      expect(context.status, value).toBe(2);
      expect(context.stderr.split('\n')[0]).toBe(`--context must be a JSON object (a context descriptor such as {"requestId":"r-1"}), got ${got}`);
    }
  });

  it('a flag value the backend or worker refuses when it checks it (--context, --nats, --pool; the worker\'s --id, --concurrency, --prefix) exits 2 naming the flag; a handler\'s refused input stays exit 1', () => {
    const typo = run(['run', fixturePlugins.basic, 'context', '--context', '{"permisions":{}}', '--no-workspace']);
    expect(typo.status).toBe(2);
    expect(typo.stderr.split('\n').slice(0, 2)).toEqual([
      "--context is not a context descriptor ({ requestId, tenantId, host, permissions, config, …fields of the host's own }):",
      '  - permisions: unknown field; did you mean "permissions"? (a field of the host\'s own may not be named this close to it)',
    ]);
    expect(typo.stderr).toContain('kb-plugin-exec --help lists the options.');
    const wrongTypes = run(['run', fixturePlugins.basic, 'context', '--context', '{"requestId":5,"host":{"kind":""}}', '--no-workspace', '--json']);
    expect(wrongTypes.status).toBe(2);
    expect(wrongTypes.stdout).toBe('');
    expect(wrongTypes.stderr.split('\n').slice(1, 3)).toEqual(['  - requestId: must be a string, got number', '  - host.kind: must not be empty']);
    const nats = run(['run', fixturePlugins.basic, 'echo', '--backend', 'queue', '--nats', 'nats://', '--no-workspace']);
    expect(nats.status).toBe(2);
    expect(nats.stderr.split('\n')[0]).toBe('--nats: "nats://" is not a server URL such as nats://host:4222');
    const pool = run(['run', fixturePlugins.basic, 'echo', '--backend', 'queue', '--nats', 'nats://127.0.0.1:1', '--pool', 'a.b', '--no-workspace']);
    expect(pool.status).toBe(2);
    expect(pool.stderr.split('\n')[0]).toBe('--pool: must be 1 to 64 letters, digits, "_" or "-", got "a.b"');
    // The workspace is made on the worker (before: taken and ignored without a word).
    const root = run(['run', fixturePlugins.basic, 'echo', '--backend', 'queue', '--nats', 'nats://127.0.0.1:1', '--workspace-root', os.tmpdir()]);
    expect(root.status).toBe(2);
    expect(root.stderr.split('\n')[0]).toBe("--workspace-root is the worker's with --backend queue (the workspace is made on the worker): give it to kb-plugin-exec worker");
    const worker = (flag: string, value: string) => run(['worker', '--nats', 'nats://127.0.0.1:1', '--plugins', fixturePlugins.basic, '--backend', 'in-process', flag, value]);
    for (const [flag, value, line] of [
      ['--id', 'a.b', '--id: must be letters, digits, "_" and "-" (64 at most), got "a.b"'],
      ['--concurrency', '100000000', '--concurrency: must be an integer from 1 to 10000, got 100000000'],
      ['--prefix', 'c..d', '--prefix: must be dot-separated tokens of letters, digits, "_" and "-", got "c..d"'],
      ['--pool', 'a.b', '--pool: must be 1 to 64 letters, digits, "_" or "-", got "a.b"'],
    ] as const) {
      const refused = worker(flag, value);
      expect(refused.status, flag).toBe(2);
      expect(refused.stderr.split('\n')[0]).toBe(line);
      expect(refused.stderr).toContain('kb-plugin-exec worker --help lists the options.');
    }
    // Every bad name at once, not the first only.
    const all = run(['worker', '--nats', 'nats://', '--plugins', fixturePlugins.basic, '--backend', 'in-process', '--pool', 'a b', '--prefix', 'c..d', '--id', 'x/y']);
    expect(all.status).toBe(2);
    expect(all.stderr.split('\n').slice(0, 4)).toEqual([
      '--nats: "nats://" is not a server URL such as nats://host:4222',
      '--pool: must be 1 to 64 letters, digits, "_" or "-", got "a b"',
      '--prefix: must be dot-separated tokens of letters, digits, "_" and "-", got "c..d"',
      '--id: must be letters, digits, "_" and "-" (64 at most), got "x/y"',
    ]);
    const input = run(['run', fixturePlugins.basic, 'validated', '--input', '{"pool":5}', '--no-workspace']);
    expect(input.status).toBe(1);
    expect(input.stderr).toMatch(/^VALIDATION_ERROR: Invalid input for handler "validated"/);
  });

  it('the default context says a CLI runs the handler, and nothing of the command line (its flag values may be secrets)', () => {
    const result = run(['run', fixturePlugins.basic, 'context', '--no-workspace', '--grant', '{"env":["API_TOKEN"]}', '--input', '{"token":"s3cret"}']);
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout).context).toEqual({ host: { kind: 'cli' } });
  });

  it('init names the plugin from the folder without a dash at either end, and names the part of the path that is a file', async () => {
    const parent = await mkdtemp(path.join(os.tmpdir(), 'kb-init-'));
    try {
      const created = run(['init', path.join(parent, 'My Plugin ✓')]);
      expect(created.status, created.stderr).toBe(0);
      expect(JSON.parse(await readFile(path.join(parent, 'My Plugin ✓', 'kb.plugin.json'), 'utf8')).id).toBe('@my-org/my-plugin');
      expect(JSON.parse(await readFile(path.join(parent, 'My Plugin ✓', 'package.json'), 'utf8')).name).toBe('my-plugin');
      // A folder the subprocess backend cannot run a plugin from: said, and its test leaves that backend out.
      const comma = run(['init', path.join(parent, 'a,b')]);
      expect(comma.status, comma.stderr).toBe(0);
      expect(comma.stderr).toContain(`Note: the subprocess backend cannot run a plugin in ${path.join(parent, 'a,b')}: Node's permission flags cannot name a path with a comma.`);
      expect(await readFile(path.join(parent, 'a,b', 'hello.test.mjs'), 'utf8')).toContain("(['in-process', 'worker-pool'])");
      await writeFile(path.join(parent, 'afile'), 'not a folder');
      const under = run(['init', path.join(parent, 'afile', 'sub')]);
      expect(under.status).toBe(2);
      expect(under.stderr.split('\n')[0]).toBe(`init: ${path.join(parent, 'afile')} is a file, so ${path.join(parent, 'afile', 'sub')} cannot be made; give a new folder`);
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });

  it('sweep removes what a dead host left, keeps another container\'s (foreign) unless told how old is gone, and never a kept workspace', async () => {
    const sweepRoot = path.join(root, 'sweep');
    await mkdir(sweepRoot, { mode: 0o700 });
    // A dead process of this machine: the pid of a child that has exited.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    // This machine's tag, from a directory the CLI's own WorkspaceManager makes and keeps.
    const kept = run(['run', fixturePlugins.basic, 'echo', '--workspace-root', sweepRoot, '--keep-workspace', '--json']);
    const keptDir = (JSON.parse(kept.stdout) as { meta: { workspaceDir: string } }).meta.workspaceDir;
    // Without --json the path is said on stderr, beside the data on stdout.
    const keptPlain = run(['run', fixturePlugins.basic, 'echo', '--workspace-root', sweepRoot, '--keep-workspace']);
    const keptPlainDir = /^workspace kept at (\S+)$/m.exec(keptPlain.stderr)?.[1];
    expect(keptPlainDir && (await stat(keptPlainDir)).isDirectory()).toBe(true);
    await rm(keptPlainDir!, { recursive: true });
    const tag = /^kbx-\d+\.([0-9a-f]{8})[.-]/.exec(path.basename(keptDir))![1]!;
    const other = tag === '00000000' ? '11111111' : '00000000';
    const left = path.join(sweepRoot, `kbx-${dead}.${tag}-left-abcdef12`);
    const foreign = path.join(sweepRoot, `kbx-${dead}.${other}-there-abcdef12`);
    await mkdir(left);
    await mkdir(foreign);
    const first = run(['sweep', '--workspace-root', sweepRoot]);
    expect(first.status).toBe(0);
    // The kept workspace's process (the CLI run) is gone too, but it was kept for the user: it
    // stays (before, it was swept with the other leftover); the mark of the one the user removed goes.
    expect(JSON.parse(first.stdout)).toEqual({ removed: [left], failed: [], foreign: [foreign], kept: [keptDir] });
    expect((await stat(keptDir)).isDirectory()).toBe(true);
    expect((await readdir(sweepRoot)).sort()).toEqual([path.basename(foreign), path.basename(keptDir), `${path.basename(keptDir)}.kept`].sort());
    const second = run(['sweep', '--workspace-root', sweepRoot, '--foreign-older-than', '0']);
    expect(JSON.parse(second.stdout)).toEqual({ removed: [foreign], failed: [], foreign: [], kept: [keptDir] });
    await rm(keptDir, { recursive: true });
    expect(JSON.parse(run(['sweep', '--workspace-root', sweepRoot]).stdout)).toEqual({ removed: [], failed: [], foreign: [], kept: [] });
    expect(await readdir(sweepRoot)).toEqual([]);
    const bad = run(['sweep', '--workspace-root', sweepRoot, '--foreign-older-than', 'soon']);
    expect(bad.status).toBe(2);
    expect(bad.stderr.split('\n')[0]).toBe('--foreign-older-than must be a whole number of milliseconds, got "soon"');
    expect(run(['sweep', '--workspace-root', sweepRoot, '--foreign-older-than', '1e3']).stderr.split('\n')[0]).toBe('--foreign-older-than must be a whole number of milliseconds, got "1e3"');
    const missing = path.join(sweepRoot, 'no-such-root');
    const mistyped = run(['sweep', '--workspace-root', missing]);
    expect(mistyped.status).toBe(1);
    expect(mistyped.stdout).toBe('');
    expect(mistyped.stderr).toBe(`WORKSPACE_ERROR: --workspace-root ${missing} does not exist: nothing to sweep\n`);
    // A file given as the root: the command line's mistake, named as its flag (exit 2), for sweep and for run.
    const fileRoot = run(['sweep', '--workspace-root', cli]);
    expect(fileRoot.status).toBe(2);
    expect(fileRoot.stderr.split('\n')[0]).toBe(`--workspace-root ${cli} is not a folder`);
    const runFileRoot = run(['run', fixturePlugins.basic, 'echo', '--workspace-root', cli]);
    expect(runFileRoot.status).toBe(2);
    expect(runFileRoot.stdout).toBe('');
    expect(runFileRoot.stderr.split('\n')[0]).toBe(`--workspace-root: no workspace can be made there: Cannot create workspace root ${cli}: it is not a directory`);
    // Without --workspace-root: the root every backend uses by default (before, a usage error, and
    // that root was named nowhere). Under a temp dir of the test's own (TMPDIR).
    const tmp = path.join(root, 'tmpdir');
    await mkdir(tmp);
    const sweepDefault = (args: string[] = []) => spawnSync(process.execPath, [cli, 'sweep', ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', TMPDIR: tmp }, timeout: 30_000 });
    expect(JSON.parse(sweepDefault().stdout)).toEqual({ removed: [], failed: [], foreign: [], kept: [] });
    const defaultRoot = path.join(tmp, `kb-plugin-workspaces-${process.getuid!()}`);
    const leftThere = path.join(defaultRoot, `kbx-${dead}.${tag}-left-abcdef12`);
    await mkdir(leftThere, { recursive: true });
    expect(JSON.parse(sweepDefault().stdout)).toEqual({ removed: [leftThere], failed: [], foreign: [], kept: [] });
    // That default root unusable (a file there) and --workspace-root not given: the backend's
    // WORKSPACE_ERROR as it is (exit 1), not said as a mistake in a flag nobody typed (exit 2).
    const fileTmp = path.join(root, 'tmpdir-root-is-a-file');
    await mkdir(fileTmp);
    const fileDefaultRoot = path.join(fileTmp, `kb-plugin-workspaces-${process.getuid!()}`);
    await writeFile(fileDefaultRoot, '');
    const runDefaultRoot = spawnSync(process.execPath, [cli, 'run', fixturePlugins.basic, 'echo', '--input', '1'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', TMPDIR: fileTmp }, timeout: 30_000 });
    expect(runDefaultRoot.status).toBe(1);
    expect(runDefaultRoot.stderr.split('\n')[0]).toBe(`WORKSPACE_ERROR: Cannot create workspace root ${fileDefaultRoot}: it is not a directory`);
    // Another command's flag is refused, not ignored.
    const initFlag = run(['init', path.join(root, 'never-made'), '--backend', 'subprocess']);
    expect(initFlag.status).toBe(2);
    expect(initFlag.stderr.split('\n')[0]).toBe('--backend is not an option of init (it takes none)');
    expect(run(['sweep', '--workspace-root', sweepRoot, '--backend', 'x']).stderr.split('\n')[0]).toBe('--backend is not an option of sweep (it takes --workspace-root, --foreign-older-than)');
    expect(run(['run', fixturePlugins.basic, 'echo', '--foreign-older-than', '5']).stderr.split('\n')[0]).toMatch(/^--foreign-older-than is not an option of run \(it takes --backend, /);
  });

  it('leaves no workspace behind', async () => {
    expect(await readdir(root).then((names) => names.filter((n) => n.startsWith('kbx-')))).toEqual([]);
  });
});
