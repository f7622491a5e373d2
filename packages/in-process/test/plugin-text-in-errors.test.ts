import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHostScript } from './node-host.js';

// A plugin folder's own text (its files' names, its modules' export names) quoted in the message of
// a HANDLER_NOT_FOUND: a host that prints `error.message` to a terminal must not send the plugin's
// escape sequences (ESC sets the window title here), C1 controls or bidirectional overrides.
const TITLE = '\x1b]0;x\x07';
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-plugin-text-'));
  const handlers = {
    named: { entry: `named${TITLE}.mjs`, export: 'run' },
    hinted: { entry: 'hinted.mjs', export: 'run' },
    missing: { entry: `gone${TITLE}.mjs` },
    classy: { entry: 'class.mjs' },
  };
  await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/plugin-text', version: '1', handlers }));
  await writeFile(path.join(dir, `named${TITLE}.mjs`), `const h = async () => 1;\nexport { h as "${TITLE}", h as "\u202eright-to-left" };\n`);
  await writeFile(path.join(dir, 'class.mjs'), `export default class Handler { static name = '\\u009b31m'; run() {} }\n`);
  // Only a name the manifest's "export" cannot take: the hint quotes it (JSON quoting leaves a C1 control raw).
  await writeFile(path.join(dir, 'hinted.mjs'), 'const h = async () => 1;\nexport { h as "\u009b31m" };\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** The failures of running each handler of the fixture plugin in a plain Node host (Node's loader, not vitest's). */
function failures(): Record<string, { code: string; message: string; details: Record<string, unknown> }> {
  const script = `
      import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
      const backend = new InProcessBackend({ plugins: [${JSON.stringify(dir)}], workspace: false });
      const out = {};
      for (const handlerId of ['named', 'hinted', 'missing', 'classy']) {
        const r = await backend.execute({ pluginId: '@x/plugin-text', handlerId });
        out[handlerId] = r.ok ? { ok: true } : { code: r.error.code, message: r.error.message, details: r.error.details };
      }
      await backend.shutdown();
      console.log(JSON.stringify(out));`;
  const result = runHostScript(script);
  expect(result.stderr).toBe('');
  return JSON.parse(result.stdout.trim()) as ReturnType<typeof failures>;
}

describe("HANDLER_NOT_FOUND quoting a plugin folder's text", () => {
  it('writes out the control characters of export names and entry paths in the message; details keep them as they are', () => {
    const { named, hinted, missing, classy } = failures();
    expect(named!.code).toBe('HANDLER_NOT_FOUND');
    expect(named!.message).toContain(`${path.join(dir, 'named\\x1b]0;x\\x07.mjs')} has no export "run" (exports: \\x1b]0;x\\x07, \\u202eright-to-left)`);
    expect(named!.details).toMatchObject({ entry: path.join(dir, `named${TITLE}.mjs`), exports: [TITLE, '\u202eright-to-left'] });
    expect(hinted!.code).toBe('HANDLER_NOT_FOUND');
    expect(hinted!.message).toContain('(exports: \\x9b31m); "export" in kb.plugin.json takes a name such as "run", not "\\x9b31m"');
    expect(missing!.code).toBe('HANDLER_NOT_FOUND');
    expect(missing!.message).toContain(`module ${path.join(dir, 'gone\\x1b]0;x\\x07.mjs')} does not exist`);
    expect(classy!.code).toBe('HANDLER_NOT_FOUND');
    expect(classy!.message).toContain('is a class (\\x9b31m), which cannot be called without new: export a function that calls it, such as (input, ctx) => new \\x9b31m().run(input, ctx)');
    for (const failure of [named, hinted, missing, classy]) expect(failure!.message).not.toMatch(/[\x00-\x1f\x7f-\x9f\u202e]/);
  });
});

describe("health() quoting a manifest's entries", () => {
  it('writes out their control characters when none of them exists', async () => {
    const unbuilt = path.join(dir, 'unbuilt');
    await mkdir(unbuilt);
    await writeFile(path.join(unbuilt, 'kb.plugin.json'), JSON.stringify({ id: '@x/unbuilt', version: '1', handlers: { run: { entry: `dist/run${TITLE}\u009b31m\u202e.mjs` } } }));
    const backend = new InProcessBackend({ plugins: [unbuilt], workspace: false });
    try {
      const { problems } = await backend.health();
      expect(problems).toEqual([`plugin "@x/unbuilt": none of its handlers' entries exists in ${unbuilt} (dist/run\\x1b]0;x\\x07\\x9b31m\\u202e.mjs): is it built?`]);
    } finally {
      await backend.shutdown();
    }
  });
});

describe("PERMISSION_DENIED quoting a manifest's fs paths", () => {
  it('writes out the control characters of a declared path the host did not grant', async () => {
    const declaring = path.join(dir, 'declaring');
    await mkdir(declaring);
    const handlers = { run: { entry: 'run.mjs', permissions: { fs: { read: [`data${TITLE}\u009b31m\u202e`] } } } };
    await writeFile(path.join(declaring, 'kb.plugin.json'), JSON.stringify({ id: '@x/declaring', version: '1', handlers }));
    await writeFile(path.join(declaring, 'run.mjs'), 'export default async () => 1;\n');
    const backend = new InProcessBackend({ plugins: [declaring], workspace: false });
    try {
      const result = await backend.execute({ pluginId: '@x/declaring', handlerId: 'run' });
      expect(result.ok ? 'ok' : result.error.code).toBe('PERMISSION_DENIED');
      const error = result.ok ? undefined : result.error;
      expect(error?.message).toContain('needs permissions the host did not grant: fs.read:data\\x1b]0;x\\x07\\x9b31m\\u202e (a host grants them');
      expect(error?.details).toMatchObject({ missing: [`fs.read:data${TITLE}\u009b31m\u202e`] });
    } finally {
      await backend.shutdown();
    }
  });
});
