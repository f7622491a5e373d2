import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectError } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, probePlugin } from './helpers.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-forged-stop-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("a handler that writes the runtime's stopped-itself to its channel (fd 3)", () => {
  it('long before its time limit is a protocol breach (WORKER_CRASHED at once), not a TIMEOUT once the limit has run out', async () => {
    // Before: the host took the child's end for one after a stop at its limit and waited for its
    // own expiry: TIMEOUT after the whole 60 s, whatever the handler did (here an exit with code 3).
    const backend = new SubprocessBackend({ plugins: [probePlugin], workspace: { root }, sandbox: 'off', prespawn: 0 });
    try {
      const result = await backend.execute({ pluginId: PROBE, handlerId: 'forges-stopped-itself' }, { timeoutMs: 60_000 });
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.message).toContain('stopped-itself');
      // Generous: it is over as the child ends, not at its time limit.
      expect(result.meta.durationMs).toBeLessThan(30_000);
    } finally {
      await backend.shutdown({ timeoutMs: 2000 });
    }
  }, 90_000);
});
