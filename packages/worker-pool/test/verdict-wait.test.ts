import type { ExecuteOptions, ExecutionRequest } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';
import { BASIC, POOL, expectError, okData, runners, useBackends, waitFor } from './helpers.js';

/**
 * busy-after-answer leaves a timer that keeps its thread busy `ms` after it answered: the answer
 * is `pending`, the thread's verdict (stays or goes) comes once that timer is done, and the next
 * task of the same handler, sent as soon as the answer is in, comes while that verdict is owed.
 */
const busyAfterAnswer = (input: { ms: number; then?: 'interval' | 'throw' }): ExecutionRequest => ({ pluginId: POOL, handlerId: 'busy-after-answer', input });
/** Long enough for a stalled test host to still send a task before the verdict comes; short of the pool's left-busy check (TAKE_WITHIN_MS). */
const OWED_MS = 300;
const WITHIN: ExecuteOptions = { timeoutMs: 20_000 };

describe("worker-pool: a thread whose verdict is still to come is about to be free for its handler's next task", () => {
  const backends = useBackends();

  it('the task waits for that verdict and the thread takes it: no thread is started beside it', async () => {
    const backend = backends.make({ maxThreads: 2 });
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await backend.execute(busyAfterAnswer({ ms: OWED_MS }), WITHIN));
    for (const result of results) expect(okData(result)).toBe('answered');
    expect(new Set(results.map((result) => result.meta.workerId)).size).toBe(1);
    expect(await runners(backend)).toMatchObject({ started: 1, redispatched: 0, retired: { 'left-busy': 0 } });
  });

  it('one task waits for a verdict, not two: the second of two that come together has a thread started for it', async () => {
    const backend = backends.make({ maxThreads: 2 });
    expect(okData(await backend.execute(busyAfterAnswer({ ms: OWED_MS }), WITHIN))).toBe('answered');
    const both = await Promise.all([backend.execute(busyAfterAnswer({ ms: 0 }), WITHIN), backend.execute(busyAfterAnswer({ ms: 0 }), WITHIN)]);
    for (const result of both) expect(okData(result)).toBe('answered');
    // Counted both against the one verdict, the second waited for that thread to run the first too.
    expect(await runners(backend)).toMatchObject({ started: 2, redispatched: 0 });
  });

  it.each([
    ['retired (its handler left an interval)', 'interval', { crashed: 0, retired: { 'handles-left': 1 } }],
    ['dead (its handler threw after answering)', 'throw', { crashed: 1, retired: { 'handles-left': 0 } }],
  ] as const)('the thread is %s: the task that waited for it gets a thread started then, and runs there once', async (_, then, figures) => {
    // None kept at minThreads: a thread started for the pool's minimum would take the task whatever the verdict did.
    const backend = backends.make({ maxThreads: 2, minThreads: 0 });
    const first = await backend.execute(busyAfterAnswer({ ms: OWED_MS, then }), WITHIN);
    const next = await backend.execute(busyAfterAnswer({ ms: 0 }), WITHIN);
    expect(okData(first)).toBe('answered');
    expect(okData(next)).toBe('answered');
    expect(next.meta.workerId).not.toBe(first.meta.workerId);
    expect(await runners(backend)).toMatchObject({ started: 2, redispatched: 0, ...figures });
  });

  it('a task aborted while it waits for a verdict is counted no more: another handler\'s task that comes next has a thread started for it', async () => {
    const backend = backends.make({ maxThreads: 2 });
    // Owed longer: the abort below comes once the task is seen queued, and another task after it.
    expect(okData(await backend.execute(busyAfterAnswer({ ms: 2 * OWED_MS }), WITHIN))).toBe('answered');
    const controller = new AbortController();
    const aborted = backend.execute(busyAfterAnswer({ ms: 0 }), { ...WITHIN, signal: controller.signal });
    await waitFor(async () => (await runners(backend)).startingWait === 1);
    controller.abort();
    expectError(await aborted, 'ABORTED');
    // Counted still against the thread's verdict, it would have waited for that thread instead.
    expect(okData(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'echoed' }, WITHIN))).toBe('echoed');
    expect(await runners(backend)).toMatchObject({ started: 2, startingWait: 0, redispatched: 0 });
  });
});
