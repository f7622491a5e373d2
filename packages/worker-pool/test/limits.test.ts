import { readdir } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BASIC, HOSTILE, POOL, expectError, expectOk, okData, runners, useBackends, waitFor } from './helpers.js';
/** Slack for a shared, loaded CI machine on top of a stated bound. */
const SLACK_MS = 3000;

describe('worker-pool: time limits, cancellation, queue', () => {
  const backends = useBackends();

  it('stops a `while (true) {}` handler within timeout + 1 s, replaces its thread, and serves others meanwhile', async () => {
    const backend = backends.make({ maxThreads: 2 });
    // A thread up first, for the loop: its limit counts from the hand-over, and a thread that is
    // still starting on a loaded machine when the 500 ms are over never runs the loop at all.
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    const looping = backend.execute({ pluginId: HOSTILE, handlerId: 'busy-loop' }, { timeoutMs: 500 });
    await waitFor(async () => (await backend.stats()).active === 1);
    const served: Array<number | undefined> = [];
    for (let i = 0; i < 10; i++) {
      const r = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i });
      expectOk(r);
      served.push(r.meta.workerId);
    }
    const result = await looping;
    expectError(result, 'TIMEOUT');
    // Ended by its limit, not by the test's: the busy thread was terminated, not waited for.
    expect(result.meta.durationMs).toBeLessThan(500 + SLACK_MS);
    expect(served).not.toContain(result.meta.workerId);
    expect((await runners(backend)).terminated).toBe(1);
    const after = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' });
    expectOk(after);
    expect(after.meta.workerId).not.toBe(result.meta.workerId);
  });

  it('counts the timeout from the handler start; the wait for a slot is reported separately', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const first = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 600 } });
    const second = backend.execute({ pluginId: POOL, handlerId: 'busy', input: { ms: 150 } }, { timeoutMs: 400 });
    const [a, b] = await Promise.all([first, second]);
    expectOk(a);
    expectOk(b);
    // It waited longer than its whole time limit, and still was not timed out (expectOk above).
    expect(b.meta.queueWaitMs).toBeGreaterThan(400);
  });

  it('terminates a running execution that ignores the abort once cancelGraceMs has passed', async () => {
    const backend = backends.make({ maxThreads: 1, cancelGraceMs: 200 });
    const controller = new AbortController();
    // Aborted once it runs (one whose modules still load never starts, and its thread keeps serving).
    const pending = backend.execute({ pluginId: POOL, handlerId: 'ignores-abort' }, { signal: controller.signal, timeoutMs: 60_000, onEvent: () => controller.abort() });
    const result = await pending;
    expectError(result, 'ABORTED');
    expect(result.error.details).toMatchObject({ phase: 'running' });
    await waitFor(async () => (await runners(backend)).terminated === 1);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
  });

  it('an abort does not lengthen the time limit: cancelGraceMs ends at the execution\'s own limit', async () => {
    // Ten minutes of grace, a limit of 1 s: the thread is ended at the limit, not in ten minutes.
    const backend = backends.make({ maxThreads: 1, cancelGraceMs: 600_000 });
    // Its thread started first: the limit counts from the hand-over, and a thread's start (over
    // 300 ms on a loaded machine) then the handler's import would use it up before the abort came.
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    const controller = new AbortController();
    const pending = backend.execute({ pluginId: POOL, handlerId: 'ignores-abort' }, { signal: controller.signal, timeoutMs: 1000, onEvent: () => controller.abort() });
    expectError(await pending, 'ABORTED');
    await waitFor(async () => (await runners(backend)).terminated === 1, 10_000);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
  });

  it('keeps the thread of a running execution that honours the abort (ctx.signal fires in the thread)', async () => {
    const backend = backends.make({ maxThreads: 1, cancelGraceMs: 5000 });
    const controller = new AbortController();
    // Aborted once the handler says it listens, not after a guessed delay: on a loaded machine its
    // module may still load then, and a handler aborted before it begins never sees its signal.
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'respects-signal' }, { signal: controller.signal, onEvent: () => controller.abort() });
    expectError(result, 'ABORTED');
    expect(result.meta.artifacts).toEqual(['signal-ABORTED.txt']);
    const next = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expect(next.meta.workerId).toBe(result.meta.workerId);
    expect((await runners(backend)).terminated).toBe(0);
  });

  it('removes an aborted queued execution: it never starts', async () => {
    const marks = await mkdtemp(path.join(os.tmpdir(), 'kb-wp-marks-'));
    try {
      const backend = backends.make({ maxThreads: 1 });
      const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 300 } });
      const controller = new AbortController();
      const queued = backend.execute({ pluginId: POOL, handlerId: 'marks-start', input: { dir: marks, name: 'queued' } }, { signal: controller.signal });
      // The first runs; the second waits for the one thread, not yet begun.
      await waitFor(async () => (await backend.stats()).queued === 1 && (await runners(backend)).busy === 1);
      controller.abort();
      const result = await queued;
      expectError(result, 'ABORTED');
      expect(result.error.details).toMatchObject({ phase: 'queued' });
      expectOk(await running);
      expectOk(await backend.execute({ pluginId: POOL, handlerId: 'marks-start', input: { dir: marks, name: 'after' } }));
      expect(await readdir(marks)).toEqual(['after.started']);
    } finally {
      await rm(marks, { recursive: true, force: true });
    }
  });

  it('answers QUEUE_FULL at once when maxQueue executions are waiting', async () => {
    const backend = backends.make({ maxThreads: 1, maxQueue: 2 });
    let runningDone = false;
    const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 400 } }).then((r) => {
      runningDone = true;
      return r;
    });
    const queued = [1, 2].map(() => backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    await waitFor(async () => (await backend.stats()).queued === 2);
    const rejected = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expectError(rejected, 'QUEUE_FULL');
    expect(runningDone).toBe(false);
    expectOk(await running);
    for (const r of await Promise.all(queued)) expectOk(r);
  });

  it('never runs more executions at once than maxConcurrency, though threads could take more', async () => {
    const backend = backends.make({ maxThreads: 3, minThreads: 3, maxConcurrency: 1 });
    const results = await Promise.all(Array.from({ length: 5 }, () => backend.execute({ pluginId: POOL, handlerId: 'span', input: { ms: 40 } })));
    const spans = results.map((r) => okData<{ start: number; end: number }>(r)).sort((a, b) => a.start - b.start);
    for (let i = 1; i < spans.length; i++) expect(spans[i]!.start).toBeGreaterThanOrEqual(spans[i - 1]!.end);
  });

  it('a replacement thread starts clean: the next execution loads its module afresh', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const result = await backend.execute({ pluginId: POOL, handlerId: 'busy', input: { ms: 5000 } }, { timeoutMs: 300 });
    expectError(result, 'TIMEOUT');
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'counter' }))).toMatchObject({ calls: 1 });
  });
});

describe('worker-pool: what the host cannot read', () => {
  const backends = useBackends();

  it('a result nested too deep for the host to read fails the execution (VALIDATION_ERROR) at once, and its thread is replaced; an event nested deeper than the host may rebuild is refused where it is sent (catchable), as on the other backends', async () => {
    const backend = backends.make({ maxThreads: 1 });
    const result = await backend.execute({ pluginId: POOL, handlerId: 'deep', input: { depth: 8000, as: 'result' } }, { timeoutMs: 20_000 });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.details).toMatchObject({ reason: 'unreadable-message' });
    expect(result.error.message).toContain('could not be read by the host');
    // Not its time limit: the host did not wait for an answer that was lost.
    expect(result.meta.durationMs).toBeLessThan(10_000);
    await waitFor(async () => (await runners(backend)).terminated === 1);
    // An event is copied (and weighed) on the thread before it is sent (flow-control.ts): nested
    // deeper than the host may rebuild, ctx.emit throws there, and the thread goes on.
    const event = await backend.execute({ pluginId: POOL, handlerId: 'deep', input: { depth: 8000, as: 'event' } }, { timeoutMs: 20_000 });
    expectError(event, 'VALIDATION_ERROR');
    expect(event.error.details).toMatchObject({ reason: 'too-deep', what: 'ctx.emit() event' });
    // Between what the thread can copy and what the host can rebuild (before: the whole execution
    // failed, unreadable-message, past the handler's try/catch, and the thread was ended).
    for (const depth of [2500, 5000]) {
      expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'deep', input: { depth, as: 'caught-event' } }))).toBe('caught VALIDATION_ERROR too-deep');
    }
    expect((await runners(backend)).terminated).toBe(1);
    expect(okData(await backend.execute({ pluginId: POOL, handlerId: 'deep', input: { depth: 3 } }))).toEqual([[[[]]]]);
  });
});
