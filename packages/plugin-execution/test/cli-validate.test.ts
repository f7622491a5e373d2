import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
let root: string;

function run(args: string[]) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: root, env: { PATH: process.env.PATH ?? '' }, timeout: 60_000 });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr, first: result.stderr.split('\n')[0] };
}

/** A plugin folder `name` with the manifest `manifest` and its files (name → text). */
async function plugin(name: string, manifest: unknown, files: Record<string, string> = {}): Promise<void> {
  const dir = path.join(root, name);
  await mkdir(dir);
  await writeFile(path.join(dir, 'kb.plugin.json'), typeof manifest === 'string' ? manifest : JSON.stringify(manifest));
  for (const [file, text] of Object.entries(files)) await writeFile(path.join(dir, file), text);
}

/** A handler that leaves a file named `ran-<id>` in the test's folder when it runs: validate must never run one. */
const handler = (id: string) => `import { writeFileSync } from 'node:fs';\nexport default () => writeFileSync(${JSON.stringify(path.join(root, 'RAN', `ran-${id}`))}, '');\n`;

describe('kb-plugin-exec validate', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-validate-'));
    await mkdir(path.join(root, 'RAN'));
    await mkdir(path.join(root, 'empty'));
    // Declares a permission: granted what it declares, the preflight lets its module load.
    await plugin('valid', { id: '@t/valid', version: '1.2.0', permissions: { env: ['HOME'] }, handlers: { hello: { entry: './h.mjs' }, named: { entry: './n.cjs', export: 'build' } } }, { 'h.mjs': handler('valid'), 'n.cjs': 'exports.build = () => 2;\n' });
    await plugin('bad-manifest', { id: '@t/bad-manifest', version: '1.0.0', permissions: { fs: { raed: ['data'] } }, handlers: { hello: { entry: './h.mjs', timeoutMs: '5' } } }, { 'h.mjs': handler('bad') });
    await plugin('no-file', { id: '@t/no-file', version: '1.0.0', handlers: { hello: { entry: './h.mjs' }, gone: { entry: './dist/gone.mjs' } } }, { 'h.mjs': handler('no-file') });
    await plugin('no-export', { id: '@t/no-export', version: '1.0.0', handlers: { hello: { entry: './h.mjs' } } }, { 'h.mjs': 'export function hello() { return 1; }\n' });
    await plugin('throws', { id: '@t/throws', version: '1.0.0', handlers: { hello: { entry: './h.cjs' } } }, { 'h.cjs': 'throw new Error("no config at load");\n' });
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  for (const backend of ['in-process', 'worker-pool', 'subprocess']) {
    it(`--backend ${backend}: a line per plugin, the problems of each by handler, exit 1; no handler runs`, () => {
      const result = run(['validate', './valid', './bad-manifest', './no-file', './no-export', './throws', '--backend', backend]);
      expect(result.status).toBe(1);
      const lines = result.stdout.split('\n');
      expect(lines[0]).toBe('./valid: ok (@t/valid@1.2.0, handlers: hello, named)');
      expect(lines.slice(1, 5)).toEqual([
        './bad-manifest: 1 problem',
        `  - VALIDATION_ERROR: Invalid plugin manifest (${path.join(root, 'bad-manifest', 'kb.plugin.json')}):`,
        '      - permissions.fs: unknown key "raed"; did you mean "read"?',
        '      - handlers.hello.timeoutMs: must be a number, got string',
      ]);
      expect(lines.slice(5, 7)).toEqual(['./no-file: 1 problem (@t/no-file@1.0.0)', `  - handler "gone": HANDLER_NOT_FOUND: Handler "gone" of plugin "@t/no-file": module ${path.join(root, 'no-file', 'dist', 'gone.mjs')} does not exist`]);
      expect(lines.slice(7, 9)).toEqual([
        './no-export: 1 problem (@t/no-export@1.0.0)',
        `  - handler "hello": HANDLER_NOT_FOUND: Handler "hello" of plugin "@t/no-export": ${path.join(root, 'no-export', 'h.mjs')} has no export "default" (exports: hello); set "export": "hello" on handler "hello" in kb.plugin.json`,
      ]);
      expect(lines.slice(9, 11)).toEqual(['./throws: 1 problem (@t/throws@1.0.0)', `  - handler "hello": HANDLER_ERROR: its module failed to load: Error: no config at load (at ${path.join(root, 'throws', 'h.cjs')}:1:7)`]);
      expect(lines.slice(11)).toEqual(['']);
      expect(existsSync(path.join(root, 'RAN', 'ran-valid'))).toBe(false);
    });
  }

  it('exit 0 when every plugin is valid; --json gives the same as an object', () => {
    const ok = run(['validate', 'valid', '--backend', 'worker-pool']);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toBe('valid: ok (@t/valid@1.2.0, handlers: hello, named)\n');
    const json = run(['validate', 'valid', 'no-export', 'bad-manifest', '--json']);
    expect(json.status).toBe(1);
    const report = JSON.parse(json.stdout) as { ok: boolean; backend: string; plugins: Array<Record<string, unknown>> };
    expect(report).toMatchObject({ ok: false, backend: 'in-process' });
    expect(report.plugins[0]).toEqual({ dir: 'valid', pluginId: '@t/valid', version: '1.2.0', ok: true, handlers: ['hello', 'named'], problems: [] });
    expect(report.plugins[1]).toMatchObject({ dir: 'no-export', ok: false, problems: [{ handlerId: 'hello', code: 'HANDLER_NOT_FOUND', details: { export: 'default', exports: ['hello'] } }] });
    expect(report.plugins[2]).toMatchObject({ dir: 'bad-manifest', ok: false, handlers: [], problems: [{ code: 'VALIDATION_ERROR', details: { issues: [{ path: 'permissions.fs' }, { path: 'handlers.hello.timeoutMs' }] } }] });
    expect(existsSync(path.join(root, 'RAN', 'ran-valid'))).toBe(false);
  });

  it('what a module prints as it loads in-process goes to stderr: stdout is the report', async () => {
    await plugin('chatty', { id: '@t/chatty', version: '1.0.0', handlers: { hello: { entry: './h.mjs' } } }, { 'h.mjs': 'console.log("loading chatty");\nexport default () => 1;\n' });
    const result = run(['validate', 'chatty']);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe('chatty: ok (@t/chatty@1.0.0, handlers: hello)\n');
    expect(result.stderr).toContain('loading chatty');
  });

  it('a module that calls process.exit() as it loads in-process: WORKER_CRASHED naming the handler, exit 1 (not the exit code it gave)', async () => {
    await plugin('exits', { id: '@t/exits', version: '1.0.0', handlers: { hello: { entry: './h.mjs' } } }, { 'h.mjs': 'process.exit(0);\nexport default () => 1;\n' });
    const result = run(['validate', 'valid', 'exits', 'no-export']);
    expect(result.status).toBe(1);
    expect(result.first).toMatch(/^WORKER_CRASHED: handler "hello" of plugin "@t\/exits" called process.exit\(0\)/);
    // The plugins checked before it keep their lines; the one that ended the process says so.
    expect(result.stdout).toBe(
      'valid: ok (@t/valid@1.2.0, handlers: hello, named)\n' +
        'exits: 1 problem (@t/exits@1.0.0)\n' +
        '  - handler "hello": WORKER_CRASHED: its module ended this process as it loaded (said on stderr); the plugins after it were not checked\n',
    );
    const json = run(['validate', 'valid', 'exits', 'no-export', '--json']);
    expect(json.status).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      backend: 'in-process',
      plugins: [
        { dir: 'valid', ok: true },
        { dir: 'exits', ok: false, problems: [{ handlerId: 'hello', code: 'WORKER_CRASHED' }] },
      ],
    });
  });

  it("a callback an earlier module left ends the process as a later one loads in-process: the earlier one is named, not the one loading", async () => {
    // A leaves a timer that calls process.exit(0) once B has begun to load (B marks it at its top); B's load never settles.
    await plugin('leaves', { id: '@t/leaves', version: '1.0.0', handlers: { hello: { entry: './h.mjs' } } }, { 'h.mjs': 'setInterval(() => { if (globalThis.kbLateLoading) process.exit(0); }, 5);\nexport default () => 1;\n' });
    await plugin('late', { id: '@t/late', version: '1.0.0', handlers: { hi: { entry: './h.mjs' } } }, { 'h.mjs': 'globalThis.kbLateLoading = true;\nawait new Promise(() => {});\nexport default () => 1;\n' });
    const result = run(['validate', 'leaves', 'late', 'valid']);
    expect(result.status).toBe(1);
    expect(result.first).toMatch(/^WORKER_CRASHED: a callback the module of handler "hello" of plugin "@t\/leaves" left running called process\.exit\(0\) as handler "hi" of plugin "@t\/late" loaded/);
    expect(result.stdout).toBe(
      'leaves: ok (@t/leaves@1.0.0, handlers: hello)\n' +
        'leaves: 1 problem (@t/leaves@1.0.0)\n' +
        '  - handler "hello": WORKER_CRASHED: a callback its module left running ended this process as a later module loaded (said on stderr)\n' +
        'late: 1 problem (@t/late@1.0.0)\n' +
        '  - handler "hi": WORKER_CRASHED: not checked: this process ended as its module loaded, by a callback the module of handler "hello" of plugin "@t/leaves" left running; the plugins after it were not checked either\n',
    );
    const json = run(['validate', 'leaves', 'late', 'valid', '--json']);
    expect(json.status).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      plugins: [
        { dir: 'leaves', ok: false, problems: [{ handlerId: 'hello', code: 'WORKER_CRASHED' }] },
        { dir: 'late', ok: false, problems: [{ handlerId: 'hi', code: 'WORKER_CRASHED', message: expect.stringMatching(/^not checked/) }] },
      ],
    });
  });

  it('a module that blocks the loop as it loads in-process: ended past its time limit, TIMEOUT naming the handler, the process ended by SIGKILL (137 in a shell), as run ends one', async () => {
    await plugin('spins', { id: '@t/spins', version: '1.0.0', handlers: { hello: { entry: './h.mjs', timeoutMs: 300 } } }, { 'h.mjs': 'while (true) {}\nexport default () => 1;\n' });
    const result = run(['validate', 'spins']);
    expect(result.signal).toBe('SIGKILL');
    expect(result.first).toMatch(/^TIMEOUT: Handler "hello" of plugin "@t\/spins" keeps the event loop blocked past its time limit of 300 ms/);
  });

  // Two commands each past a 300 ms limit and its 2 s grace: 9–13 s alone, 33 s in a loaded lane (a budget, not a measure).
  it('a module that blocks the loop as it loads in-process: the report is still printed, the plugins before it and its TIMEOUT (--json: the JSON report, not an empty stdout)', { timeout: 120_000 }, async () => {
    // Blocked asleep (Atomics.wait, for good), not spinning as the test above: the loop is as blocked, without a core burnt to SIGKILL twice.
    await plugin('blocks', { id: '@t/blocks', version: '1.0.0', handlers: { hello: { entry: './h.mjs', timeoutMs: 300 } } }, { 'h.mjs': 'Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);\nexport default () => 1;\n' });
    const problem = 'TIMEOUT: its module kept the event loop blocked past its time limit of 300 ms as it loaded (said on stderr): the process was ended; the plugins after it were not checked';
    const result = run(['validate', 'valid', 'blocks', 'no-export']);
    expect(result.signal).toBe('SIGKILL');
    expect(result.first).toMatch(/^TIMEOUT: Handler "hello" of plugin "@t\/blocks" keeps the event loop blocked/);
    // Before: the valid plugin's line alone, nothing of the one that blocked.
    expect(result.stdout).toBe(`valid: ok (@t/valid@1.2.0, handlers: hello, named)\nblocks: 1 problem (@t/blocks@1.0.0)\n  - handler "hello": ${problem}\n`);
    const json = run(['validate', 'valid', 'blocks', 'no-export', '--json']);
    expect(json.signal).toBe('SIGKILL');
    // Before: an empty stdout, which no JSON reader takes.
    expect(JSON.parse(json.stdout)).toEqual({
      ok: false,
      backend: 'in-process',
      plugins: [
        { dir: 'valid', pluginId: '@t/valid', version: '1.2.0', ok: true, handlers: ['hello', 'named'], problems: [] },
        { dir: 'blocks', pluginId: '@t/blocks', version: '1.0.0', ok: false, handlers: ['hello'], problems: [{ handlerId: 'hello', code: 'TIMEOUT', message: problem.slice('TIMEOUT: '.length) }] },
      ],
    });
  });

  it("a module whose import never settles is reported within the default 30 s, once for its handlers, not after the hour its manifest allows each handler's run", async () => {
    const handlers = { report: { entry: './h.mjs', timeoutMs: 3_600_000 }, summary: { entry: './h.mjs', export: 'summary' } };
    await plugin('hangs', { id: '@t/hangs', version: '1.0.0', handlers }, { 'h.mjs': 'await new Promise(() => setInterval(() => {}, 1000));\nexport default () => 1;\nexport const summary = () => 2;\n' });
    // Before: validate waited the manifest's hour (spawnSync's 60 s cut it: status null), then 30 s more for the other handler.
    const result = run(['validate', 'hangs', '--backend', 'worker-pool']);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe(
      'hangs: 2 problems (@t/hangs@1.0.0)\n' +
        '  - handler "report": TIMEOUT: its module did not finish loading within 30000 ms (an import or top-level await that never settles?)\n' +
        '  - handler "summary": TIMEOUT: its module did not finish loading for handler "report" (not tried again)\n',
    );
  }, 90_000);

  it('loads the handlers on the backend --backend names: a module that will not load on a worker thread fails on worker-pool only', async () => {
    await plugin('main-thread-only', { id: '@t/main-thread-only', version: '1.0.0', handlers: { hello: { entry: './h.mjs' } } }, {
      'h.mjs': "import { isMainThread } from 'node:worker_threads';\nif (!isMainThread) throw new Error('refuses to load on a worker thread');\nexport default () => 1;\n",
    });
    const inProcess = run(['validate', './main-thread-only', '--backend', 'in-process']);
    expect(inProcess.status, inProcess.stdout + inProcess.stderr).toBe(0);
    const workerPool = run(['validate', './main-thread-only', '--backend', 'worker-pool']);
    expect(workerPool.status).toBe(1);
    expect(workerPool.stdout + workerPool.stderr).toContain('refuses to load on a worker thread');
  });

  it("a load failure the runtime names the file of (a JSON import without its attribute) is said without an \"(at …)\" into the package's own dist/, on every backend", async () => {
    await plugin('json-import', { id: '@t/json-import', version: '1.0.0', handlers: { hello: { entry: './h.mjs' } } }, { 'h.mjs': "import data from './data.json';\nexport default () => data;\n", 'data.json': '{}' });
    const file = path.join(root, 'json-import', 'data.json');
    for (const backend of ['in-process', 'worker-pool', 'subprocess']) {
      const result = run(['validate', './json-import', '--backend', backend]);
      expect(result.status, result.stdout + result.stderr).toBe(1);
      // Before: each line ended "(at …/plugin-execution-core/dist/chunk-….js:224:10)" (worker-pool: a core .cjs chunk; subprocess: its child-entry.cjs).
      expect(result.stdout.split('\n')[1], backend).toBe(
        `  - handler "hello": HANDLER_ERROR: its module failed to load: TypeError: Handler "hello" of plugin "@t/json-import": ${file} is a JSON module, imported (by ${path.join(root, 'json-import', 'h.mjs')} or a module it imports) without the import attribute Node requires of one. Import it as import data from './data.json' with { type: 'json' }`,
      );
    }
  }, 90_000);

  it('usage errors exit 2: no folder, a folder without kb.plugin.json, --backend queue, a flag of run, a mistyped backend', () => {
    const cases: Array<[string[], string]> = [
      [['validate'], 'validate needs <plugin-dir> (one or more)'],
      [['validate', 'valid', './nope'], `Plugin folder ${path.join(root, 'nope')} does not exist`],
      [['validate', 'empty'], `No kb.plugin.json in plugin folder ${path.join(root, 'empty')}`],
      [['validate', 'valid', '--backend', 'queue'], "validate loads handlers where this command runs; a queue's handlers load on its workers: give --backend the backend the workers run (kb-plugin-exec worker --backend)"],
      [['validate', 'valid', '--input', '1'], '--input is not an option of validate (it takes --backend, --json)'],
      [['validate', 'valid', '--backend', 'subproces'], '--backend must be one of in-process, worker-pool, subprocess, queue, got "subproces"; did you mean "subprocess"?'],
      [['validat', 'valid'], 'unknown command "validat"; did you mean "validate"?'],
    ];
    for (const [args, first] of cases) {
      const result = run(args);
      expect({ args, status: result.status, first: result.first, stdout: result.stdout }).toEqual({ args, status: 2, first, stdout: '' });
    }
  });

  it('validate --help and help validate print its part of the help; --help lists it', () => {
    const [asFlag, asTopic] = [run(['validate', '--help']), run(['help', 'validate'])];
    expect([asFlag.status, asTopic.status]).toEqual([0, 0]);
    expect(asTopic.stdout).toBe(asFlag.stdout);
    expect(asFlag.stdout.startsWith('Usage:\n  kb-plugin-exec validate <plugin-dir> [<plugin-dir> …] [--backend <type>] [--json]\n\nvalidate checks each <plugin-dir> without running a handler')).toBe(true);
    expect(asFlag.stdout).toContain("(default: in-process, where a\nmodule's top-level code runs in this process, as with run, and one that blocks the loop as it loads\nends the process past the handler's time limit: TIMEOUT, 137)");
    expect(asFlag.stdout).not.toContain('Options for run:');
    const all = run(['--help']).stdout;
    expect(all).toContain('  kb-plugin-exec validate <plugin-dir>');
    expect(all).toContain('validate checks each <plugin-dir> without running a handler');
  });
});
