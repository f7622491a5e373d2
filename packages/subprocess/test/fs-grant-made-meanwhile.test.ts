import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A declared folder not there yet when the host builds a child's flags, and there when the child's
// Node reads them: made meanwhile by another execution's handler (two first runs of a plugin whose
// handlers make their `out`). Node 20 aborted at start-up (an assertion in its path tree) when
// given an existing folder and its wildcard, so that execution crashed (SIGABRT) before it began.
// The wrapper below makes the folder in that gap, each time, as such a handler may.
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kb-made-meanwhile-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe.runIf(process.platform === 'linux')('a declared folder made between the host building the flags and the child starting', () => {
  it('fs.write "out", missing when the flags are built and made before the child starts: the child starts and writes it', async () => {
    const plugin = path.join(scratch, 'plugin');
    await mkdir(plugin);
    await writeFile(
      path.join(plugin, 'handler.mjs'),
      "import fs from 'node:fs';\nexport default () => { fs.mkdirSync(new URL('./out/', import.meta.url), { recursive: true }); fs.writeFileSync(new URL('./out/made.txt', import.meta.url), 'made'); return 'wrote'; };\n",
    );
    const permissions = { fs: { write: ['out'] } };
    await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: '@made-meanwhile/p', version: '1.0.0', handlers: { run: { entry: './handler.mjs', permissions } } }));
    // This Node, but a child's start first makes the plugin's `out` (the question `node -e …` aside).
    const node = path.join(scratch, 'node-making-out');
    await writeFile(node, `#!/bin/sh\nif [ "$1" != "-e" ]; then mkdir -p ${JSON.stringify(path.join(plugin, 'out'))}; fi\nexec ${JSON.stringify(process.execPath)} "$@"\n`);
    await chmod(node, 0o755);
    const backend = new SubprocessBackend({ sandbox: 'off', execPath: node, plugins: [plugin], permissions, workspace: false });
    try {
      const result = await backend.execute({ pluginId: '@made-meanwhile/p', handlerId: 'run' });
      expect(result.ok ? result.data : result.error.message).toBe('wrote');
      expect(await readFile(path.join(plugin, 'out', 'made.txt'), 'utf8')).toBe('made');
    } finally {
      await backend.shutdown({ timeoutMs: 2000 });
    }
  });
});
