import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expectError, expectOk } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBE, probePlugin } from './helpers.js';

let root: string;
let backend: SubprocessBackend;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-forged-result-'));
  backend = new SubprocessBackend({ plugins: [probePlugin], workspace: { root }, sandbox: 'off', prespawn: 0 });
});
afterAll(async () => {
  await backend.shutdown({ timeoutMs: 2000 });
  await rm(root, { recursive: true, force: true });
});

// A handler can write a well-formed result to its channel (fd 3) itself. The codes that say what
// happened to an execution (TIMEOUT, WORKER_CRASHED) or that it never ran (QUEUE_FULL,
// SHUTTING_DOWN: a host may retry it) are the host's own findings, so a forged one is the
// handler's HANDLER_ERROR naming it; what a handler may report itself passes as it is.
describe("a handler that writes a result to its channel (fd 3) with a code of the host's", () => {
  it.each(['TIMEOUT', 'WORKER_CRASHED', 'SHUTTING_DOWN', 'QUEUE_FULL'])('%s is reported as its HANDLER_ERROR naming the code', async (code) => {
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'pipe-garbage', input: { kind: 'forged-result', code } }, { timeoutMs: 20_000 });
    expectError(result, 'HANDLER_ERROR');
    expect(result.error.details).toMatchObject({ code });
    expect(result.error.message).toContain(`(${code}): written by the handler`);
  });

  it('PERMISSION_DENIED, which a handler may report, passes as it is', async () => {
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'pipe-garbage', input: { kind: 'forged-result', code: 'PERMISSION_DENIED' } }, { timeoutMs: 20_000 });
    expectError(result, 'PERMISSION_DENIED');
  });
});

// Anything after the result is from a child being discarded: bytes that are no frame, read with
// the result (one chunk) or after it, neither lose the result nor turn it into a crash.
describe('a result followed on its channel (fd 3) by bytes that are no frame', () => {
  it('is the result, not WORKER_CRASHED (protocol)', async () => {
    const result = await backend.execute({ pluginId: PROBE, handlerId: 'pipe-garbage', input: { kind: 'result-then-garbage' } }, { timeoutMs: 20_000 });
    expectOk(result);
    expect(result.data).toBe('answered');
    expect((await backend.stats()).runners).toMatchObject({ crashed: { protocol: 0 } });
  });
});
