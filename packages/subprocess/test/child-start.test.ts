import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, probePlugin } from './helpers.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-subprocess-start-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

// Every cold execution pays for what its child loads before the handler: core's runner is
// bundled into the child's script, and nothing else of the library may come with it (a host-side
// import in a file the child shares, messages.ts, once made every start load core's backend kit:
// ~60 ms of a ~90 ms cold start on a 2-core machine).
describe('what a child loads', () => {
  it.each(['off', 'auto'] as const)('loads only its own script before the handler (sandbox %s)', async (sandbox) => {
    const backend = new SubprocessBackend({ plugins: [probePlugin], workspace: { root }, sandbox });
    try {
      const result = await backend.execute({ pluginId: PROBE, handlerId: 'loaded-modules' });
      expect(result.ok).toBe(true);
      const loaded = (result as { data: string[] }).data;
      expect(loaded.some((file) => file.endsWith(`${path.sep}child-entry.cjs`))).toBe(true);
      expect(loaded.filter((file) => !file.endsWith(`${path.sep}child-entry.cjs`))).toEqual([]);
    } finally {
      await backend.shutdown();
    }
  });
});
