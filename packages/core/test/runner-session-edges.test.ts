import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AbortedError, TimeoutError, serializeError } from '../src/index.js';
import { CALLS_IN_FLIGHT, RunnerSession, type RunnerTask, type RunnerToHost } from '../src/backend-kit.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A runner's session on its own, fed what a host sends: a cancel (or two) meeting a handler that
// has not begun, or platform calls waiting their turn past CALLS_IN_FLIGHT.
let root: string;

const HANDLERS = `
export const idle = async () => 'idle';
export const signalReason = async (input, ctx) => { await new Promise((resolve) => setTimeout(resolve, 20)); return ctx.signal.reason?.code; };
export const manyCalls = async (input, ctx) => {
  for (let i = 0; i < input.calls; i++) ctx.platform.cache.get('k' + i).catch(() => undefined);
  if (input.waitForCancel) await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
  return 'fired';
};
`;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kb-runner-session-edges-'));
  await writeFile(path.join(root, 'handlers.mjs'), HANDLERS);
  // Its top level takes 50 ms: a cancel comes while it loads.
  await writeFile(path.join(root, 'slow-load.mjs'), "await new Promise((resolve) => setTimeout(resolve, 50));\nexport default async () => 'ran';\n");
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function task(exportName: string, input?: unknown): RunnerTask {
  return { executionId: `exec-${exportName}`, pluginId: '@t/edges', handlerId: exportName, pluginRoot: root, entryPath: path.join(root, 'handlers.mjs'), exportName, input, context: {}, workspaceDir: undefined, permissions: {}, timeoutMs: 10_000, memoryMb: undefined };
}

const cancel = (error: Error) => ({ type: 'cancel', reason: serializeError(error) }) as const;
const sleep = (ms: number) => new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), ms));

describe('RunnerSession at the edges of an execution', () => {
  it('keeps the first cancel\'s reason when a second cancel follows (the host decided on the first)', async () => {
    // Loaded once first: the warm path, where the handler begins without looking at the signal.
    await new RunnerSession(task('signalReason'), () => undefined).run();
    const session = new RunnerSession(task('signalReason'), () => undefined);
    const running = session.run();
    session.handle(cancel(new TimeoutError('timed out', { details: { timeoutMs: 1 } })));
    session.handle(cancel(new AbortedError('stopped', { details: { phase: 'running' } })));
    expect(await running).toMatchObject({ ok: true, data: 'TIMEOUT' });
  });

  it('answers a cancel that came while the handler\'s modules loaded with the host\'s own error (TIMEOUT), the handler not begun', async () => {
    const session = new RunnerSession({ ...task('default'), entryPath: path.join(root, 'slow-load.mjs') }, () => undefined);
    const running = session.run();
    session.handle(cancel(new TimeoutError('timed out', { details: { timeoutMs: 1 } })));
    const result = await running;
    expect(result).toMatchObject({ ok: false, error: { code: 'TIMEOUT', message: 'timed out' } });
  });

  it('does not ask the host whether a cancelled execution may begin: the answer is no', async () => {
    const sent: RunnerToHost[] = [];
    const session = new RunnerSession(task('idle'), (message) => sent.push(message));
    session.handle(cancel(new AbortedError('stopped', { details: { phase: 'running' } })));
    const answer = session.mayBegin();
    expect(sent).toEqual([]);
    expect(await answer).toBe(false);
  });

  it('after a cancel, sends no platform call still waiting its turn, nor waits for one before its result', async () => {
    const sent: RunnerToHost[] = [];
    // A host that stopped the execution answers none of its calls.
    const session = new RunnerSession(task('manyCalls', { calls: CALLS_IN_FLIGHT + 3, waitForCancel: true }), (message) => sent.push(message));
    const running = session.run();
    const rpcs = () => sent.filter((message) => message.type === 'rpc');
    // Stopped once the handler has begun and its calls fill the window.
    while (rpcs().length < CALLS_IN_FLIGHT) await new Promise((resolve) => setTimeout(resolve, 5));
    session.handle(cancel(new AbortedError('stopped', { details: { phase: 'running' } })));
    // A generous bound for "does not hang": the result is due at once.
    expect(await Promise.race([running, sleep(3_000)])).toMatchObject({ ok: true, data: 'fired' });
    expect(rpcs()).toHaveLength(CALLS_IN_FLIGHT);
  });
});
