import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectError } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A declared fs path is the manifest's own text, and where a link there leads is the plugin's
// choice: a PERMISSION_DENIED quoting them writes out their control characters (ESC sets a
// terminal's title here), since a host prints its message.
const linux = process.platform === 'linux';
const TITLE = '\x1b]0;x\x07';
let scratch: string;
const backends: SubprocessBackend[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kb-fs-path-shown-'));
  await chmod(scratch, 0o755);
});
afterAll(async () => {
  await Promise.all(backends.map((b) => b.shutdown()));
  await rm(scratch, { recursive: true, force: true });
});

describe.runIf(linux)('a declared fs path holding control characters', () => {
  it.each(['off', 'required'] as const)('that is a link out of the plugin folder: its PERMISSION_DENIED writes them out (sandbox %s)', async (sandbox) => {
    const plugin = await mkdtemp(path.join(scratch, 'plugin-'));
    const target = await mkdtemp(path.join(scratch, `target${TITLE}-`));
    await chmod(plugin, 0o755);
    const declared = `data${TITLE}\u202e`;
    await symlink(target, path.join(plugin, declared));
    await writeFile(path.join(plugin, 'handler.mjs'), 'export default () => 1;\n');
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@shown/p', version: '1.0.0', handlers: { run: { entry: './handler.mjs', permissions: { fs: { read: [declared] } } } } }));
    const backend = new SubprocessBackend({ sandbox, plugins: [plugin], permissions: { fs: { read: [declared] } }, workspace: false });
    backends.push(backend);
    const result = await backend.execute({ pluginId: '@shown/p', handlerId: 'run' });
    expectError(result, 'PERMISSION_DENIED');
    const shownTarget = target.replace(TITLE, '\\x1b]0;x\\x07');
    expect(result.error.message).toBe(`The plugin's fs.read path "data\\x1b]0;x\\x07\\u202e" leads outside the plugin folder (to ${shownTarget}, through a symbolic link): refused`);
    expect(result.error.details).toMatchObject({ resource: `fs.read:${declared}`, path: target });
  });
});
