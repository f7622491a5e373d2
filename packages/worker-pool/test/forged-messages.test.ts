import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASIC, POOL, expectError, expectOk, runners, useBackends } from './helpers.js';

/**
 * Plugin code runs in the runner's realm, so it can reach its thread's channel to the host (here
 * through Node's list of active handles). What it posts there must neither take the host down
 * nor make the pool run the execution again and again.
 */
describe('worker-pool: messages a handler forges on its thread channel', () => {
  const backends = useBackends();
  let marks = '';
  beforeAll(async () => {
    marks = await mkdtemp(path.join(os.tmpdir(), 'kb-wp-forged-'));
  });
  afterAll(async () => {
    await rm(marks, { recursive: true, force: true });
  });
  const runs = async (name: string) => (await readFile(path.join(marks, name), 'utf8')).length;

  it.each([
    ['a log whose message is no string', { k: 'each', m: { type: 'log', level: 'info', message: { toString: 1 } } }, 'log without a string message'],
    ['output lines that are no array', { k: 'each', out: 'stdout', lines: 5 }, 'output lines that are not strings'],
    ['no runner message', { k: 'each', m: null }, 'message is not an object (null)'],
    ['a string', 'nonsense', 'message is not an object ("nonsense")'],
    ['a crash report of no known kind', { crash: { k: 1, reason: 'bored' } }, 'crash report with an unknown reason "bored"'],
    ['a result that is not one', { k: 'each', m: { type: 'result', ok: false } }, 'failed result without an error object'],
  ])('%s: WORKER_CRASHED protocol, the host unaffected, the next execution runs', async (name, post, problem) => {
    const backend = backends.make({ maxThreads: 1 });
    const result = await backend.execute({ pluginId: POOL, handlerId: 'forges-on-channel', input: { dir: marks, name, posts: [post] } }, { timeoutMs: 10_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'protocol', protocolError: problem });
    expect(result.error.message).toMatch(/broke the host protocol and was ended/);
    expect(await runs(name)).toBe(1);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
    expect((await runners(backend)).crashed).toBe(1);
  });

  it('a decline sent after the execution was heard from: WORKER_CRASHED, the body ran once', async () => {
    const backend = backends.make({ maxThreads: 2 });
    const input = { dir: marks, name: 'late-decline', logFirst: true, posts: [{ k: 'each', declined: 'globals-tampered' }] };
    const result = await backend.execute({ pluginId: POOL, handlerId: 'forges-on-channel', input }, { timeoutMs: 10_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'protocol', protocolError: 'it declined an execution it had begun' });
    expect(await runs('late-decline')).toBe(1);
    expect((await runners(backend)).redispatched).toBe(0);
  });

  it('declines sent before anything else: given to another thread no more than maxThreads times, then WORKER_CRASHED', async () => {
    const backend = backends.make({ maxThreads: 2 });
    const input = { dir: marks, name: 'early-decline', posts: [{ k: 'each', declined: 'globals-tampered' }] };
    const result = await backend.execute({ pluginId: POOL, handlerId: 'forges-on-channel', input }, { timeoutMs: 20_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'protocol' });
    expect(result.error.message).toMatch(/3 threads in a row declined the execution/);
    expect(await runs('early-decline')).toBe(3);
    expect((await runners(backend)).redispatched).toBe(2);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });
});
