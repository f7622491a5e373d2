import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectError } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, probePlugin } from './helpers.js';

let root: string;
let backend: SubprocessBackend;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-forged-details-'));
  backend = new SubprocessBackend({ plugins: [probePlugin], workspace: { root }, sandbox: 'off', prespawn: 0 });
});
afterAll(async () => {
  await backend.shutdown({ timeoutMs: 2000 });
  await rm(root, { recursive: true, force: true });
});

/** The forged details as the caller gets them: their string cut as the runtime cuts one, and JSON that ends (it did not, listing 100^8 objects). */
function expectCut(details: Record<string, unknown> | undefined): void {
  const big = String(details?.big);
  expect({ length: big.length, end: big.slice(-20) }).toEqual({ length: 64 * 1024 - 1, end: '… [34485 more chars]' });
  expect(JSON.stringify(details).length).toBeLessThan(5 * 1024 * 1024);
}

// The runtime cuts an error's details as it writes them (toWireValue): a handler writing its
// result to its channel (fd 3) itself gets no more through than the runtime would have written.
describe("an error's details a handler writes to its channel (fd 3) itself, past what its runtime writes", () => {
  it('are cut by the host as the runtime cuts them (HANDLER_NOT_FOUND, which passes as it is)', async () => {
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'pipe-garbage', input: { kind: 'forged-result-details', code: 'HANDLER_NOT_FOUND' } }, { timeoutMs: 20_000 });
    expectError(result, 'HANDLER_NOT_FOUND');
    // Before: all 100,000 characters, and one object listed 100^8 times over (JSON.stringify of them never ended).
    expectCut(result.error.details as Record<string, unknown>);
  });

  it("are cut by the host in the cause of the HANDLER_ERROR a host's code is reported as (TIMEOUT)", async () => {
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'pipe-garbage', input: { kind: 'forged-result-details', code: 'TIMEOUT' } }, { timeoutMs: 20_000 });
    expectError(result, 'HANDLER_ERROR');
    expectCut((result.error.cause as { details?: Record<string, unknown> }).details);
  });
});
