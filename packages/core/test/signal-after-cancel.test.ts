import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AbortedError, serializeError } from '../src/index.js';
import { RunnerSession, type RunnerTask } from '../src/backend-kit.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-signal-after-cancel-'));
  // ctx.signal read only after a pause: the cancel comes before the signal is made.
  await writeFile(path.join(root, 'late-signal.mjs'), 'export default async (input, ctx) => { await new Promise((resolve) => setTimeout(resolve, 20)); return ctx.signal.aborted ? ctx.signal.reason.code : "not aborted"; };\n');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function task(executionId: string): RunnerTask {
  return { executionId, pluginId: '@t/signal', handlerId: 'run', pluginRoot: root, entryPath: path.join(root, 'late-signal.mjs'), exportName: 'default', input: undefined, context: {}, workspaceDir: undefined, permissions: {}, timeoutMs: 10_000, memoryMb: undefined };
}

describe('ctx.signal, made on first read', () => {
  it('is aborted, with the reason the host gave, when the cancel came before the handler first read it', async () => {
    // Loaded once first: the second execution takes the warm path, which reads no signal before the handler does.
    await new RunnerSession(task('exec-warm'), () => undefined).run();
    const session = new RunnerSession(task('exec-cancelled'), () => undefined);
    const running = session.run();
    session.handle({ type: 'cancel', reason: serializeError(new AbortedError('stop', { details: { phase: 'running' } })) });
    expect(await running).toMatchObject({ ok: true, data: 'ABORTED' });
  });
});
