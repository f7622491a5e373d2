import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectOk } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, probePlugin } from './helpers.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-ends-after-result-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('a handler that returned, then ended its process from a callback it left', () => {
  // Before: the child drains its stdout before it sends the result; a handler that printed more
  // than the pipe holds gave its leftover callback that turn of the loop, and the process ended
  // with the result unsent: WORKER_CRASHED ("exited with code 0 before returning a result"),
  // where the same handler printing less (or on worker-pool) returned its result.
  for (const end of ['exit', 'throw'] as const) {
    it(`its result stands, as on worker-pool, however much it printed (${end === 'exit' ? 'process.exit(0)' : 'an uncaught throw'})`, async () => {
      const backend = new SubprocessBackend({ plugins: [probePlugin], workspace: { root }, sandbox: 'off', prespawn: 0 });
      try {
        for (const print of [10, 4 * 1024 * 1024]) {
          const result = await backend.execute({ pluginId: PROBE, handlerId: 'ends-after-result', input: { print, end } });
          expectOk(result);
          expect(result.data, `printing ${print} characters`).toEqual({ returned: true });
        }
      } finally {
        await backend.shutdown({ timeoutMs: 2000 });
      }
    }, 60_000);
  }
});
