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

  const FORGED = 'posted on its channel by plugin code, past ctx';
  it.each([
    ['a log whose message is no string', [{ k: 'each', units: 1, m: { type: 'log', level: 'info', message: { toString: 1 } } }], 'log without a string message'],
    ['output lines that are no array', [{ k: 'each', units: 1, out: 'stdout', lines: 5 }], 'output lines that are not strings'],
    ['no runner message', [{ k: 'each', units: 1, m: null }], 'message is not an object (null)'],
    ['a string', ['nonsense'], 'message is not an object ("nonsense")'],
    ['a crash report of no known kind', [{ crash: { k: 1, reason: 'bored' } }], 'crash report with an unknown reason "bored"'],
    ['a result that is not one', [{ k: 'each', m: { type: 'result', ok: false } }], 'failed result without an error object'],
    ['a weight past any message of the runtime (it would wrap the count the thread waits on)', [{ k: 999_999, units: 2 ** 32 - 100_000, out: 'stdout', lines: [] }], 'units number where the runtime weighs 1 to 2^20'],
    ['a well-formed log line the runtime did not count (unpaced: the host would hold a flood of them)', [{ k: 'each', units: 1, m: { type: 'log', level: 'info', message: 'x' } }], `a message its runtime did not count as sent (${FORGED})`],
    ['a well-formed result, to take the thread past its time limit and answer for the next executions', [{ k: 'each', m: { type: 'result', ok: true, data: 'forged' } }], `a result its runtime did not send (${FORGED})`],
    ['a verdict of no known kind', [{ k: 'each', verdict: { retire: 'bored' } }], 'retire for an unknown reason "bored"'],
    ['pending on what is not an answer', [{ k: 'each', units: 1, pending: true, m: { type: 'log', level: 'info', message: 'x' } }], 'pending on what is not an answer without a verdict'],
    ['a well-formed verdict the host did not wait for (unpaced: the host would hold a flood of them)', [{ k: 'each', verdict: {} }], `a verdict its runtime did not send (${FORGED})`],
    ['a well-formed result for an execution the thread is not running (unpaced)', [{ k: 987_654, m: { type: 'result', ok: true, data: 'forged' } }], `a result its runtime did not send (${FORGED})`],
    ['a well-formed decline for an execution the thread is not running (unpaced)', [{ k: 987_654, declined: 'recycled' }], `a decline its runtime did not send (${FORGED})`],
    ['a reaped from a thread that is not retiring (unpaced)', [{ reaped: true }], `a reaped its runtime did not send (${FORGED})`],
    ['a reaped that is not true', [{ reaped: 1 }], 'reaped number where the runtime says true'],
    // Each shape check says what is wrong, before the message is taken (one taken would be said otherwise).
    ['an execution number that is not one', [{ k: -1, units: 1, out: 'stdout', lines: [] }], 'k is not an execution number (number)'],
    ['output of a stream that is not stdout or stderr', [{ k: 'each', units: 1, out: 'stdin', lines: [] }], 'output of an unknown stream "stdin"'],
    ['a decline for no known reason', [{ k: 987_654, declined: 'bored' }], 'declined for an unknown reason "bored"'],
    ['a verdict that is no object', [{ k: 'each', verdict: 5 }], 'a verdict that is not an object (number)'],
    ['a verdict reaping a thread it does not retire', [{ k: 'each', verdict: { reaping: true } }], 'reaping without a retire'],
    ['a verdict binding a thread it retires', [{ k: 'each', verdict: { retire: 'recycled', bound: true } }], 'bound on a thread that goes, or not true'],
    ['a crash report weighed as paced', [{ crash: { k: 1, reason: 'exit' }, units: 1 }], 'a crash report with units'],
    ['a crash report whose error is no object', [{ crash: { k: 1, reason: 'exit', error: 'boom' } }], 'crash report with an error that is not an object'],
    ['a crash report whose exit code is no integer', [{ crash: { k: 1, reason: 'exit', exitCode: 1.5 } }], 'crash report with an exit code that is not an integer'],
    ['pending on an answer that carries a verdict', [{ k: 'each', pending: true, retire: 'recycled', m: { type: 'result', ok: true, data: 'forged' } }], 'pending on what is not an answer without a verdict'],
    ['a ready message, the hello a thread says on its parentPort', [{ k: 'each', units: 1, m: { type: 'ready' } }], 'a ready message (a thread says hello on its parentPort)'],
    ['crash reports, kept by the host for the thread\'s life', Array.from({ length: 10 }, () => ({ crash: { k: -1, reason: 'exit' } })), 'more crash reports than a dying thread sends'],
  ])('%s: WORKER_CRASHED protocol, the host unaffected, the next execution runs', async (name, posts, problem) => {
    const backend = backends.make({ maxThreads: 1 });
    const result = await backend.execute({ pluginId: POOL, handlerId: 'forges-on-channel', input: { dir: marks, name, posts } }, { timeoutMs: 10_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'protocol', protocolError: problem });
    expect(result.error.message).toMatch(/broke the host protocol and was ended/);
    expect(await runs(name)).toBe(1);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
    expect((await runners(backend)).crashed).toBe(1);
  });

  it('a crash report an earlier execution forged (or its own process.emit("exit") sent) is no proof that the next one never began: one that began and died is not run again', async () => {
    const backend = backends.make({ maxThreads: 1, resourceLimits: { maxOldGenerationSizeMb: 48 } });
    const forged = await backend.execute({ pluginId: POOL, handlerId: 'forges-on-channel', input: { dir: marks, name: 'stale-report', holdMs: 10, posts: [{ crash: { k: 987_654, reason: 'exit' } }] } });
    expectOk(forged);
    const name = 'began-then-died';
    const died = await backend.execute({ pluginId: POOL, handlerId: 'appends-then-alloc', input: { dir: marks, name } }, { timeoutMs: 20_000 });
    expectError(died, 'WORKER_CRASHED');
    expect(await runs(name)).toBe(1);
    expect((await runners(backend)).redispatched).toBe(0);
  });

  it('crash reports a handler plants and then answers (under the cap) end its thread at its answer: the next plugin\'s crash is told in its own words', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const error = { $error: 1, name: 'Error', message: 'FORGED by the planting plugin' };
    const posts = [0, 1, 2, 3].map((k) => ({ crash: { k, reason: 'uncaught-exception', error } }));
    const planted = await backend.execute({ pluginId: POOL, handlerId: 'forges-on-channel', input: { dir: marks, name: 'planted-reports', holdMs: 10, posts } });
    expectOk(planted);
    expect(planted.data).toEqual({ found: true });
    const victim = await backend.execute({ pluginId: POOL, handlerId: 'exit-code' }, { timeoutMs: 10_000 });
    expectError(victim, 'WORKER_CRASHED');
    expect(victim.error.details).toMatchObject({ reason: 'exit', exitCode: 0 });
    expect(victim.error.message).not.toMatch(/FORGED/);
    expect(victim.meta.runnerId).not.toBe(planted.meta.runnerId);
  });

  it.each(['Atomics.store', 'Atomics.load', 'Atomics.add', 'Atomics.notify'])(
    'a handler that replaces %s while it spawns a child does not catch its thread\'s shared buffer (to say there its execution never began): it dies, and its execution is not run again',
    async (global) => {
      const backend = backends.make({ maxThreads: 1 });
      const name = `forges-begun-${global}`;
      const died = await backend.execute({ pluginId: POOL, handlerId: 'forges-begun', input: { dir: marks, name, global } }, { timeoutMs: 10_000 });
      expectError(died, 'WORKER_CRASHED');
      expect(await runs(name)).toBe(1);
      expect((await runners(backend)).redispatched).toBe(0);
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
    },
  );

  it("a handler that patches what its thread reads its next task with (Map.prototype.get), to end the thread there, has that next execution begun: not run again on another thread", async () => {
    const backend = backends.make({ maxThreads: 1 });
    const name = 'patched-unpack';
    expectOk(await backend.execute({ pluginId: POOL, handlerId: 'patches-task-reads', input: { dir: marks, name, patch: true } }));
    const next = await backend.execute({ pluginId: POOL, handlerId: 'patches-task-reads', input: { dir: marks, name } }, { timeoutMs: 10_000 });
    expectError(next, 'WORKER_CRASHED');
    // The first execution's body, once; the second's never ran, here or on another thread.
    expect(await runs(name)).toBe(1);
    expect((await runners(backend)).redispatched).toBe(0);
  });

  it.each([
    ['after the execution was heard from', true],
    ['before anything else', false],
  ])('a decline sent %s: WORKER_CRASHED, the body ran once, nothing given to another thread', async (_, logFirst) => {
    const backend = backends.make({ maxThreads: 2 });
    const name = `decline-${logFirst}`;
    const input = { dir: marks, name, logFirst, posts: [{ k: 'each', declined: 'globals-tampered' }] };
    const result = await backend.execute({ pluginId: POOL, handlerId: 'forges-on-channel', input }, { timeoutMs: 10_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.details).toMatchObject({ reason: 'protocol', protocolError: `a decline its runtime did not send (${FORGED})` });
    expect(await runs(name)).toBe(1);
    expect((await runners(backend)).redispatched).toBe(0);
  });
});

/**
 * The same handles let plugin code close its thread's channel, or take the runner's listener off
 * it: what a later execution sent, or was sent, would be lost, its handler having run.
 */
describe("worker-pool: a handler that breaks its thread's channel", () => {
  const backends = useBackends();

  it('closed a moment after it answered: the next plugin\'s execution runs on another thread and is answered, not timed out', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const attack = await backend.execute({ pluginId: POOL, handlerId: 'tampers-with-channel', input: { mode: 'close-after' } });
    expectOk(attack);
    expect(attack.data).toMatchObject({ ports: expect.any(Number) });
    const victim = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'victim' }, { timeoutMs: 8000 });
    expectOk(victim);
    expect(victim.data).toBe('victim');
    expect(victim.meta.runnerId).not.toBe(attack.meta.runnerId);
  });

  it('closed before it answered: its own execution fails WORKER_CRASHED at once, not at its time limit', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const attack = await backend.execute({ pluginId: POOL, handlerId: 'tampers-with-channel', input: { mode: 'close' } }, { timeoutMs: 20_000 });
    expectError(attack, 'WORKER_CRASHED');
    expect(attack.meta.durationMs).toBeLessThan(10_000);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });

  it.each(['strip', 'unref'])("its listener taken off, or the channel unref'd (%s): the next plugin's platform call is answered on another thread (the thread declines its task)", async (mode) => {
    const backend = backends.make({ maxThreads: 1, platform: { kv: { get: async (key: string) => `value of ${key}` } }, permissions: { platform: { kv: true } } });
    expectOk(await backend.execute({ pluginId: POOL, handlerId: 'tampers-with-channel', input: { mode } }));
    const victim = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { args: ['k'] } }, { timeoutMs: 8000 });
    expectOk(victim);
    expect(victim.data).toMatchObject({ ok: true, value: 'value of k' });
    expect(await runners(backend)).toMatchObject({ retired: { 'globals-tampered': 1 }, redispatched: 1 });
  });
});

