import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PermissionDeniedError } from '@kb-labs/plugin-execution-core';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fsGrants, type ChildProfile } from '../src/host/permission-flags.js';
import { Sandbox } from '../src/host/sandbox.js';
import { eventually, passableByOthers } from './helpers.js';

// The host (root) makes and hands over a plugin's declared write folders after checking that no
// part of them is a symbolic link. One manifest may not declare a path inside its own write folder
// (core refuses it when the plugin is loaded), but two plugins registered from one folder, or two
// generations of one, may: a handler with childProcess that writes the outer folder (`out`) can
// swap a folder on the way to the other's (`out/x` of `out/x/cache`) for a link at any moment,
// from a process of its own. What the host makes or hands over must be what it checked, never
// what a link swapped in since leads to.
const NOBODY = { uid: 65534, gid: 65534 };
const rootHost = process.platform === 'linux' && process.getuid?.() === 0;

let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'folder-links-'));
  await chmod(scratch, 0o755);
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Swaps `<argv[1]>/x` between its folder and a link to `argv[2]` until killed, having written `<argv[1]>/swapping`. */
const SWAP = `
  const fs = require('node:fs');
  const [out, target] = process.argv.slice(1);
  const x = out + '/x';
  fs.writeFileSync(out + '/swapping', '');
  for (let i = 0; ; i++) {
    const away = out + '/away-' + i;
    try { fs.renameSync(x, away); } catch {}
    try { fs.symlinkSync(target, x); } catch {}
    try { fs.unlinkSync(x); } catch {}
    try { fs.renameSync(away, x); } catch {}
  }`;

/** A process of the sandbox user's, swapping `<out>/x` between its folder and a link to `target` until killed. */
function swapper(out: string, target: string): ChildProcess {
  return spawn(process.execPath, ['-e', SWAP, out, target], { ...NOBODY, stdio: 'ignore' });
}

describe.runIf(rootHost && passableByOthers(os.tmpdir()))('declared write folders inside one another, a link swapped in after the check', () => {
  it('the host never makes a folder outside the plugin folder, nor hands one to the sandbox user: a swapped part is refused (PERMISSION_DENIED)', async () => {
    const sandbox = new Sandbox({ mode: 'required', bwrapPath: undefined, user: NOBODY, execPath: process.execPath, tmpMb: 16 });
    expect((await sandbox.ready()).active).toBe(true);
    const plugin = await mkdtemp(path.join(scratch, 'plugin-'));
    await chmod(plugin, 0o755);
    await writeFile(path.join(plugin, 'handler.mjs'), 'export default () => 1;\n');
    await mkdir(path.join(plugin, 'out', 'x', 'cache'), { recursive: true });
    await chown(path.join(plugin, 'out'), NOBODY.uid, NOBODY.gid);
    // A folder of the host's elsewhere, of the name of one inner declared folder (`made` is not there).
    const outside = await mkdtemp(path.join(scratch, 'outside-'));
    await chmod(outside, 0o755);
    await mkdir(path.join(outside, 'cache'));
    const fsWrite = ['out', 'out/x/cache', 'out/x/made'];
    const profile: ChildProfile = { pluginRoot: plugin, fsRead: [], fsWrite, childProcess: true, network: false, workspaceGrant: undefined, memoryMb: undefined };
    const grants = fsGrants(profile, { accepted: new Set(), extraReadPaths: [], readAncestorNodeModules: false });
    const node = { flags: [], entry: path.join(plugin, 'handler.mjs'), args: () => [] };
    const swapping = swapper(path.join(plugin, 'out'), outside);
    const refusals = new Set<string>();
    const escaped = async () => (await stat(path.join(outside, 'cache'))).uid !== 0 || (await readdir(outside)).length > 1;
    try {
      for (let i = 0; i < 2000 && !(await escaped()); i++) {
        try {
          sandbox.createWriteFolders(profile);
          sandbox.launch(profile, grants, node, plugin, false);
        } catch (error) {
          // Refused (a link seen), or a folder away for a moment (ENOENT): neither makes nor hands over anything.
          refusals.add(error instanceof PermissionDeniedError ? 'PERMISSION_DENIED' : String((error as NodeJS.ErrnoException).code));
        }
      }
    } finally {
      swapping.kill('SIGKILL');
    }
    const owner = await stat(path.join(outside, 'cache'));
    expect([owner.uid, owner.gid], 'a folder outside the plugin folder was handed to the sandbox user').toEqual([0, 0]);
    expect(await readdir(outside), 'the host made a folder outside the plugin folder').toEqual(['cache']);
    expect(refusals.has('PERMISSION_DENIED')).toBe(true);
  }, 60_000);
});

describe.runIf(rootHost && passableByOthers(os.tmpdir()))('two plugins of one folder, one writing a folder on the way to the other\'s write folder', () => {
  it('what the writer swaps in is refused to the other (PERMISSION_DENIED): nothing outside the plugin folder is made or handed over', async () => {
    const plugin = await mkdtemp(path.join(scratch, 'shared-'));
    await chmod(plugin, 0o755);
    // The writer's handler starts a process swapping out/x for a link to `target`, and returns once the host writes out/stop.
    const swap = `
      import { spawn } from 'node:child_process';
      import { existsSync } from 'node:fs';
      const out = new URL('./out', import.meta.url).pathname;
      export default async (input) => {
        spawn(process.execPath, ['-e', ${JSON.stringify(SWAP)}, out, input.target], { stdio: 'ignore' });
        while (!existsSync(out + '/stop')) await new Promise((resolve) => setTimeout(resolve, 20));
        return 'stopped';
      };`;
    await writeFile(path.join(plugin, 'swap.mjs'), swap);
    await writeFile(path.join(plugin, 'use.mjs'), 'export default () => "used";\n');
    await mkdir(path.join(plugin, 'out', 'x', 'cache'), { recursive: true });
    const outside = await mkdtemp(path.join(scratch, 'outside-'));
    await chmod(outside, 0o755);
    await mkdir(path.join(outside, 'cache'));
    const writer = { id: '@folder-links/writer', version: '1.0.0', handlers: { swap: { entry: './swap.mjs', permissions: { fs: { write: ['out'] }, childProcess: true } } } };
    const user = { id: '@folder-links/user', version: '1.0.0', handlers: { use: { entry: './use.mjs', permissions: { fs: { write: ['out/x/cache', 'out/x/made'] } } } } };
    const backend = new SubprocessBackend({
      sandbox: 'required',
      plugins: [{ root: plugin, manifest: writer }, { root: plugin, manifest: user }],
      workspace: { root: path.join(scratch, 'workspaces') },
      permissions: { fs: { write: ['out', 'out/x/cache', 'out/x/made'] }, childProcess: true },
    });
    const swapping = backend.execute({ pluginId: writer.id, handlerId: 'swap', input: { target: outside } });
    const escaped = async () => (await stat(path.join(outside, 'cache'))).uid !== 0 || (await readdir(outside)).length > 1;
    const codes = new Set<string>();
    try {
      expect(await eventually(() => existsSync(path.join(plugin, 'out', 'swapping')), 10_000), 'the swapping process started').toBe(true);
      for (let i = 0; i < 200 && !(await escaped()); i++) {
        const result = await backend.execute({ pluginId: user.id, handlerId: 'use' });
        codes.add(result.ok ? 'ok' : result.error.code);
      }
    } finally {
      await writeFile(path.join(plugin, 'out', 'stop'), '');
      await swapping;
      await backend.shutdown();
    }
    const owner = await stat(path.join(outside, 'cache'));
    expect([owner.uid, owner.gid], 'a folder outside the plugin folder was handed to the sandbox user').toEqual([0, 0]);
    expect(await readdir(outside), 'the host made a folder outside the plugin folder').toEqual(['cache']);
    expect(codes.has('PERMISSION_DENIED')).toBe(true);
  }, 60_000);
});
