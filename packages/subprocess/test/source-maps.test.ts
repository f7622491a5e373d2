import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectError } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let root: string;
let plugin: string;
const hostHadSourceMaps = process.sourceMapsEnabled;

// A plugin built from TypeScript with a source map, as `tsc --sourceMap` or a bundler leaves it:
// dist/run.mjs line 2 (the throw) comes from src/run.ts line 11.
const BUILT = "export default async function run() {\n  throw new Error('mapped failure');\n}\n//# sourceMappingURL=run.mjs.map\n";
const MAP = { version: 3, file: 'run.mjs', sources: ['../src/run.ts'], names: [], mappings: 'AAAA;EAUE' };

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-subprocess-maps-'));
  plugin = path.join(root, 'plugin');
  await mkdir(path.join(plugin, 'dist'), { recursive: true });
  await writeFile(path.join(plugin, 'kb.plugin.json'), JSON.stringify({ id: 'mapped', version: '1.0.0', handlers: { run: { entry: './dist/run.mjs' } } }));
  await writeFile(path.join(plugin, 'dist', 'run.mjs'), BUILT);
  await writeFile(path.join(plugin, 'dist', 'run.mjs.map'), JSON.stringify(MAP));
  // The host runs with source maps on (`node --enable-source-maps`, or NODE_OPTIONS with it).
  process.setSourceMapsEnabled(true);
});

afterAll(async () => {
  process.setSourceMapsEnabled(hostHadSourceMaps);
  await rm(root, { recursive: true, force: true });
});

// The host's in-process and worker-pool handlers get their stacks mapped by the host's own flag;
// a child starts with none of the host's flags, so a HANDLER_ERROR's stack named the built file.
describe("a host with source maps on: a handler's stack names its sources on this backend too", () => {
  it.each(['off', 'auto'] as const)('sandbox %s', async (sandbox) => {
    const backend = new SubprocessBackend({ plugins: [plugin], workspace: { root: path.join(root, 'ws') }, sandbox });
    try {
      const result = await backend.execute({ pluginId: 'mapped', handlerId: 'run' });
      expectError(result, 'HANDLER_ERROR');
      const stack = String((result.error.cause as Error).stack);
      expect(stack).toContain(`${path.join(plugin, 'src', 'run.ts')}:11:`);
    } finally {
      await backend.shutdown();
    }
  });
});
