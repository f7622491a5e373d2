import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let base: string;
/** A folder named with a byte that is not UTF-8 (0xff): a string cannot name it, so it is made and entered by bytes. */
const notUtf8 = Buffer.from([0x78, 0xff, 0x79]); // "x\xffy"

beforeAll(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), 'kb-cwd-'));
  const dir = Buffer.concat([Buffer.from(`${base}/`), notUtf8]);
  mkdirSync(Buffer.concat([dir, Buffer.from('/plugin')]), { recursive: true });
  writeFileSync(Buffer.concat([dir, Buffer.from('/plugin/kb.plugin.json')]), JSON.stringify({ id: '@t/cwd', version: '1.0.0', handlers: { run: { entry: './run.mjs' } } }));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

/** Runs `script` (an ES module) with core's build, from the folder whose name is not UTF-8; its lines of JSON. */
function fromThere(script: string): unknown[] {
  const dist = new URL('../dist/index.js', import.meta.url).href;
  const module = `const core = await import(${JSON.stringify(dist)});\n${script}`;
  const run = spawnSync('sh', ['-c', 'cd "$1/$(printf "x\\377y")" && exec "$2" --input-type=module -e "$3"', 'sh', base, process.execPath, module], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '' },
    timeout: 20_000,
  });
  expect(run.stderr).toBe('');
  return run.stdout.trim().split('\n').map((line) => JSON.parse(line) as unknown);
}

describe.runIf(process.platform === 'linux')('relative paths from a working directory whose path is not UTF-8 (Node reads each such byte as "\ufffd")', () => {
  it('a relative workspace root is refused when the backend is made, naming the root and why; no folder is made beside the real one', () => {
    const [manager, lazy] = fromThere(`
const said = (make) => { try { make(); return 'made'; } catch (e) { return { code: e.code, message: e.message }; } };
const manager = said(() => new core.WorkspaceManager({ root: './ws' }));
// Before: made; its first workspace went to "<base>/x\ufffdy/ws", a new folder, not "<base>/x\\xffy/ws".
if (manager === 'made') await new core.WorkspaceManager({ root: './ws' }).acquire('e-1');
console.log(JSON.stringify(manager));
console.log(JSON.stringify(said(() => core.createExecutionBackend({ type: 'in-process', workspace: { root: './ws' } }))));
`);
    const why = `the working directory's path is not UTF-8 text (Node reads it as "${base}/x\ufffdy", a "\ufffd" for each byte it cannot read, which names no folder)`;
    expect(manager).toEqual({ code: 'WORKSPACE_ERROR', message: expect.stringContaining(`WorkspaceManager root "./ws" is relative, and ${why}`) });
    expect(lazy).toEqual({ code: 'VALIDATION_ERROR', message: `Option "workspace.root" ("./ws") is relative, and ${why}, so no path under it can be named: rename the folder whose name is not UTF-8, or work from another directory` });
    expect(readdirSync(base, { encoding: 'buffer' })).toEqual([notUtf8]);
  });

  it('a relative plugin folder there is not said to be missing without saying why', () => {
    const [loaded] = fromThere(`
const error = await new core.PluginRegistry().load('./plugin').then(() => undefined, (e) => e);
console.log(JSON.stringify({ code: error?.code, message: error?.message }));
`);
    // Before: "Plugin folder <base>/x\ufffdy/plugin does not exist (the relative path "./plugin" is resolved from the working directory …)", which it is.
    expect(loaded).toEqual({ code: 'VALIDATION_ERROR', message: expect.stringContaining(`Plugin folder ${base}/x\ufffdy/plugin does not exist (the working directory's path is not UTF-8 text`) });
  });
});
