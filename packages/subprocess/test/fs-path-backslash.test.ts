import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectError } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A declared fs path is checked as if "\" separated folders ("data\x/.." reads as "data"), but on
// Linux it is one character of a name: the child would be granted what the path names there
// ("data\x/../kb.plugin.json" is the manifest), not what the host granted.
const linux = process.platform === 'linux';
let scratch: string;
const backends: SubprocessBackend[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kb-backslash-'));
  await chmod(scratch, 0o755);
});
afterAll(async () => {
  await Promise.all(backends.map((b) => b.shutdown()));
  await rm(scratch, { recursive: true, force: true });
});

describe.runIf(linux)('a declared fs path with a backslash', () => {
  it.each(['off', 'required'] as const)('"data\\\\x/../kb.plugin.json" with fs.write granted for "data" only: refused (VALIDATION_ERROR), the manifest is not rewritten (sandbox %s)', async (sandbox) => {
    const plugin = await mkdtemp(path.join(scratch, 'plugin-'));
    await chmod(plugin, 0o755);
    await mkdir(path.join(plugin, 'data'), { mode: 0o777 });
    await writeFile(
      path.join(plugin, 'handler.mjs'),
      "import fs from 'node:fs';\nexport default () => { fs.writeFileSync(new URL('./kb.plugin.json', import.meta.url), 'PWNED'); return 'rewrote the manifest'; };\n",
    );
    const manifest = JSON.stringify({ id: '@backslash/p', version: '1.0.0', handlers: { run: { entry: './handler.mjs', permissions: { fs: { write: ['data\\x/../kb.plugin.json'] } } } } });
    await writeFile(path.join(plugin, 'kb.plugin.json'), manifest, { mode: 0o666 });
    await chmod(plugin, 0o777);
    const backend = new SubprocessBackend({ sandbox, plugins: [plugin], permissions: { fs: { write: ['data'] } }, workspace: false });
    backends.push(backend);
    const result = await backend.execute({ pluginId: '@backslash/p', handlerId: 'run' });
    expect(await readFile(path.join(plugin, 'kb.plugin.json'), 'utf8')).toBe(manifest);
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toContain('must use "/" between folders');
  });
});
