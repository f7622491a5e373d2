import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const cli = path.join(dist, 'cli.js');
let plugin: string;

function run(args: string[], timeout = 60_000) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout, maxBuffer: 64 * 1024 * 1024 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * An orchestrating handler that rethrows the failure of an execution of its own (its file of
 * its own: a subprocess's sandbox does not let a plugin import from outside its folder).
 */
const RETHROW = `
import { createExecutionBackend } from ${JSON.stringify(pathToFileURL(path.join(dist, 'index.js')).href)};

export async function rethrow() {
  const inner = createExecutionBackend({ type: 'in-process' });
  const result = await inner.execute({ pluginId: 'other', handlerId: 'any', context: { tenantId: 5 } });
  await inner.shutdown();
  throw result.error;
}
`;

/** What `run` reports of what a handler returned or threw. */
const HANDLERS = `

// A VALIDATION_ERROR worded and shaped as the backend's refusal of a --context.
export async function forged() {
  const error = new Error('Invalid execution request:\\n  - context.tenantId: must be a string, got number');
  error.name = 'ValidationError';
  error.code = 'VALIDATION_ERROR';
  error.details = { issues: [{ path: 'context.tenantId', message: 'must be a string, got number' }] };
  throw error;
}

export async function sparse() {
  const huge = [];
  huge[5] = { at: 5 };
  huge[2 ** 32 - 2] = 'last';
  huge[7] = huge;
  return { huge, holey: [1, , 3], dense: [1, 2, 3] };
}

// What the help's printing rules name beyond the plain cases: an Error's cause,
// boxed primitives, raw bytes, a Date that is none, and references back from inside a Map's value
// and a sparse array's element (their paths as printed).
export async function shapes() {
  const error = new Error('high', { cause: new Error('low') });
  const held = { name: 'held' };
  held.back = held;
  const item = { i: 1 };
  item.self = item;
  const bytes = new Uint8Array([1, 2, 3]);
  return {
    error,
    boxed: [new String('s'), new Number(2), new Boolean(false), Object(3n)],
    buffer: bytes.buffer,
    view: new DataView(bytes.buffer, 1, 2),
    never: new Date(NaN),
    map: new Map([['k', held]]),
    holes: [, item],
  };
}

export async function logsFields(input, ctx) {
  ctx.logger.info('bare', {});
  ctx.logger.info('with', { a: 1 });
  return 'logged';
}

export async function hello() {
  return { hello: 'world' };
}

// 95 million characters that JSON writes as \\u0001 each: longer than a string can be.
export async function tooLarge() {
  return '\\u0001'.repeat(95_000_000);
}
`;

/** What the handler `needy` declares: every kind a grant has. */
const NEEDY = { platform: { kv: ['get', 'set'], cache: true }, fs: { read: ['in'], write: ['out'] }, env: ['TOKEN'], network: true, childProcess: true };

describe('kb-plugin-exec run: what it reports of a result', () => {
  beforeAll(async () => {
    plugin = await mkdtemp(path.join(os.tmpdir(), 'kb-cli-results-'));
    // Readable by the subprocess backend's sandbox user, which would otherwise warn on stderr.
    await chmod(plugin, 0o755);
    const handlers = Object.fromEntries(['forged', 'sparse', 'shapes', 'tooLarge', 'hello', 'logsFields'].map((name) => [name, { entry: './handlers.mjs', export: name }]));
    // Declares one of each kind of permission, for the --grant a denial suggests.
    const needy = { entry: './handlers.mjs', export: 'hello', permissions: NEEDY };
    const manifest = { id: '@t/results', version: '1.0.0', handlers: { ...handlers, needy, rethrow: { entry: './rethrow.mjs', export: 'rethrow' } } };
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify(manifest));
    await writeFile(path.join(plugin, 'handlers.mjs'), HANDLERS);
    await writeFile(path.join(plugin, 'rethrow.mjs'), RETHROW);
  });
  afterAll(async () => {
    await rm(plugin, { recursive: true, force: true });
  });

  it("a handler's own VALIDATION_ERROR is its failure, exit 1, never a mistake in --context: one it rethrew from an execution of its own, or one shaped as the backend's refusal", () => {
    for (const backend of ['in-process', 'worker-pool', 'subprocess']) {
      if (backend !== 'subprocess') {
        const rethrown = run(['run', plugin, 'rethrow', '--backend', backend, '--no-workspace']);
        expect(rethrown.status, `${backend}: ${rethrown.stderr}`).toBe(1);
        expect(rethrown.stderr.split('\n').slice(0, 2)).toEqual(['VALIDATION_ERROR: Invalid execution request:', '  - context.tenantId: must be a string, got number']);
      }
      const forged = run(['run', plugin, 'forged', '--backend', backend, '--context', '{"tenantId":"t-1"}', '--no-workspace']);
      expect(forged.status, `${backend}: ${forged.stderr}`).toBe(1);
      expect(forged.stderr.split('\n')[0]).toBe('VALIDATION_ERROR: Invalid execution request:');
      expect(forged.stderr).not.toContain('Usage:');
    }
    // The backend's own refusal of the --context given is still the command line's mistake.
    const refused = run(['run', plugin, 'forged', '--context', '{"tenantId":5}', '--no-workspace']);
    expect(refused.status).toBe(2);
    expect(refused.stderr.split('\n').slice(0, 2)).toEqual(["--context is not a context descriptor ({ requestId, tenantId, host, permissions, config, …fields of the host's own }):", '  - tenantId: must be a string, got number']);
  });

  it('the --grant a denial suggests grants every kind of permission the handler declares: run with it, the handler runs', () => {
    const denied = run(['run', plugin, 'needy', '--no-workspace']);
    expect(denied.status).toBe(1);
    expect(denied.stderr).toMatch(/^PERMISSION_DENIED: /);
    const hinted = /\(on this command line: --grant '(.+)'\)$/m.exec(denied.stderr)?.[1];
    expect(hinted, denied.stderr).toBeDefined();
    expect(JSON.parse(hinted!)).toEqual(NEEDY);
    const granted = run(['run', plugin, 'needy', '--no-workspace', '--grant', hinted!]);
    expect(granted.status, granted.stderr).toBe(0);
    expect(JSON.parse(granted.stdout)).toEqual({ hello: 'world' });
  });

  it('--logs prints what was logged with a line after it, and nothing for a line logged with no fields ({})', () => {
    const result = run(['run', plugin, 'logsFields', '--logs', '--no-workspace']);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr.split('\n').filter((line) => line.startsWith('['))).toEqual(['[logger:info] bare', '[logger:info] with {"a":1}']);
  });

  it('prints an array with holes as its length and its elements by index, however long it is; a dense one stays an array', () => {
    for (const backend of ['in-process', 'subprocess']) {
      const result = run(['run', plugin, 'sparse', '--backend', backend, '--no-workspace']);
      expect(result.status, `${backend}: ${result.stderr}`).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual({
        huge: { '[sparse array]': { length: 2 ** 32 - 1, items: { '5': { at: 5 }, '7': '[Circular: $.huge]', '4294967294': 'last' } } },
        holey: { '[sparse array]': { length: 3, items: { '0': 1, '2': 3 } } },
        dense: [1, 2, 3],
      });
    }
  });

  it("prints an Error's cause, boxed primitives as their value, an ArrayBuffer and a DataView as bytes, an invalid Date as words, and the path of a reference back from inside a Map or a sparse array", () => {
    // In-process: the value as the handler made it (what another backend's wire carries of it is its own matter).
    const result = run(['run', plugin, 'shapes', '--no-workspace']);
    expect(result.status, result.stderr).toBe(0);
    const stack = (message: string) => expect.stringMatching(new RegExp(`^Error: ${message}\\n`));
    expect(JSON.parse(result.stdout)).toEqual({
      error: { name: 'Error', message: 'high', stack: stack('high'), cause: { name: 'Error', message: 'low', stack: stack('low') } },
      boxed: ['s', 2, false, '3n'],
      buffer: [1, 2, 3],
      view: [2, 3],
      never: 'Invalid Date',
      map: [['k', { name: 'held', back: '[Circular: $.map[0][1]]' }]],
      holes: { '[sparse array]': { length: 2, items: { '1': { i: 1, self: '[Circular: $.holes["[sparse array]"].items["1"]]' } } } },
    });
  });

  // A time budget, not a measure: the command copies a 95 MB result and writes JSON of it up to
  // the longest string Node makes, ~4.5 s alone, 33 s in a loaded CI lane (and on Node 22 and 24).
  it('a result too large to print as JSON fails the command with VALIDATION_ERROR saying so, exit 1, nothing on stdout', { timeout: 180_000 }, () => {
    const result = run(['run', plugin, 'tooLarge', '--no-workspace'], 170_000);
    expect(result.status, result.stderr).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^VALIDATION_ERROR: handler result cannot be printed as JSON: it is too large \(its JSON is longer than the longest string Node makes, \d+ characters\)\n$/);
  });

  // `> result.json` on a full disk: the result never reached the file, and a script must not read exit 0.
  it('output stdout cannot take (ENOSPC) is said as lost and fails the command, exit 1; a failure keeps its code', () => {
    const full = openSync('/dev/full', 'w');
    try {
      const runFull = (args: string[]) => {
        const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 60_000, stdio: ['ignore', full, 'pipe'] });
        return { status: result.status, stderr: result.stderr };
      };
      const lost = 'ERROR: standard output could not take what the command printed (ENOSPC: no space left on device, write): it is lost\n';
      for (const args of [['run', plugin, 'hello', '--no-workspace'], ['run', plugin, 'hello', '--json', '--no-workspace'], ['--help']]) {
        const result = runFull(args);
        expect(result.status, `${args.join(' ')}: ${result.stderr}`).toBe(1);
        expect(result.stderr).toBe(lost);
      }
      const failed = runFull(['run', plugin, 'forged', '--json', '--no-workspace']);
      expect(failed.status).toBe(1);
      expect(failed.stderr).toBe(`VALIDATION_ERROR: Invalid execution request:\n  - context.tenantId: must be a string, got number\n${lost}`);
    } finally {
      closeSync(full);
    }
  });
});
