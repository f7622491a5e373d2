import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASIC, HOSTILE, POOL, expectError, expectOk, okData, runners, sleep, useBackends, waitFor } from './helpers.js';

/**
 * Each thread holds up to STAGE_DEPTH executions waiting behind its running one (see thread-protocol.ts). These
 * tests pin down what that must never change: time limits count from the real start, a waiting
 * execution that is aborted never runs, one that loses its thread to another's crash or timeout
 * runs elsewhere, nothing waits behind a slow handler while a thread idles, and no more run at
 * once than allowed.
 */
describe('worker-pool: executions waiting on a thread behind a running one', () => {
  const backends = useBackends();
  let marks = '';
  beforeAll(async () => {
    marks = await mkdtemp(path.join(os.tmpdir(), 'kb-wp-marks-'));
  });
  afterAll(async () => {
    await rm(marks, { recursive: true, force: true });
  });
  /**
   * A backend whose thread is up and has run once: an execution then goes straight to it, and one
   * issued in the same tick waits behind it there (no workspace: nothing asynchronous between).
   */
  const warm = async (options: Parameters<typeof backends.make>[0] = {}) => {
    const backend = backends.make({ maxThreads: 1, workspace: false, ...options });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'warm' }));
    return backend;
  };
  const exists = (file: string) =>
    access(path.join(marks, file)).then(
      () => true,
      () => false,
    );

  it('hands the next executions to the busy thread, counts them as queued, and starts their time limit when they begin', async () => {
    const backend = await warm();
    const first = backend.execute({ pluginId: POOL, handlerId: 'busy', input: { ms: 400 } });
    const second = backend.execute({ pluginId: POOL, handlerId: 'busy', input: { ms: 100 } }, { timeoutMs: 300 });
    const third = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 3 });
    // Both wait on the one thread (STAGE_DEPTH places behind its running execution).
    await waitFor(async () => (await runners(backend)).staged === 2);
    expect(await backend.stats()).toMatchObject({ active: 1, queued: 2, concurrency: 1, utilization: 1 });
    const [a, b, c] = await Promise.all([first, second, third]);
    expectOk(a);
    expectOk(c);
    // It waited longer than its own time limit behind the first, on the same thread, and was not timed out.
    expectOk(b);
    expect(b.meta.workerId).toBe(a.meta.workerId);
    expect(c.meta.workerId).toBe(a.meta.workerId);
    expect(b.meta.queueWaitMs).toBeGreaterThan(300);
    expect(b.meta.runMs).toBeLessThan(300);
  });

  it('an aborted execution that waits behind a running one never runs, and the running one keeps its thread', async () => {
    const backend = await warm();
    const controller = new AbortController();
    const running = backend.execute({ pluginId: POOL, handlerId: 'busy', input: { ms: 400 } });
    const waiting = backend.execute({ pluginId: POOL, handlerId: 'marks-start', input: { dir: marks, name: 'aborted-waiting' } }, { signal: controller.signal });
    await waitFor(async () => (await runners(backend)).staged === 1);
    controller.abort();
    const aborted = await waiting;
    expectError(aborted, 'ABORTED');
    expect(aborted.error.details).toMatchObject({ phase: 'queued' });
    expectOk(await running);
    const after = await backend.execute({ pluginId: POOL, handlerId: 'marks-start', input: { dir: marks, name: 'after-abort' } });
    expectOk(after);
    expect(await exists('after-abort.started')).toBe(true);
    expect(await exists('aborted-waiting.started')).toBe(false);
    expect(await runners(backend)).toMatchObject({ terminated: 0, crashed: 0, staged: 0, held: 0 });
  });

  it.each([
    ['crashes', { pluginId: HOSTILE, handlerId: 'exit' }, {}, 'WORKER_CRASHED'],
    ['times out', { pluginId: HOSTILE, handlerId: 'busy-loop' }, { timeoutMs: 300 }, 'TIMEOUT'],
  ] as const)('an execution waiting behind one that %s runs on another thread and succeeds', async (_, request, options, code) => {
    const backend = await warm();
    const doomed = backend.execute(request, options);
    const behind = backend.execute({ pluginId: POOL, handlerId: 'marks-start', input: { dir: marks, name: `behind-${code}` } });
    const [d, b] = await Promise.all([doomed, behind]);
    expectError(d, code);
    expect(okData(b)).toEqual({ started: `behind-${code}` });
    expect(b.meta.workerId).not.toBe(d.meta.workerId);
    expect((await runners(backend)).redispatched).toBeGreaterThanOrEqual(1);
  });

  it.each(['exit', 'unhandled-rejection'])('one that crashes its thread (%s) right after the one before it answered: that answer stands, and it ran once', async (handlerId) => {
    // The thread begins the waiting execution the moment it has answered for the one before; if
    // that one crashes the thread at once, the host may not have read the answer yet (piscina
    // drops unread replies of a dead thread; the thread's last words carry it, see CrashReport).
    const backend = await warm();
    for (let i = 0; i < 20; i++) {
      const name = `answered-${handlerId}-${i}`;
      const before = backend.execute({ pluginId: POOL, handlerId: 'appends', input: { dir: marks, name } });
      const crashing = backend.execute({ pluginId: HOSTILE, handlerId });
      const [b, c] = await Promise.all([before, crashing]);
      expect(okData(b)).toEqual({ appended: name });
      expectError(c, 'WORKER_CRASHED');
      expect(await readFile(path.join(marks, name), 'utf8')).toBe('x');
    }
  });

  it('an execution waiting behind one whose thread is retired runs on another thread', async () => {
    const backend = await warm();
    const tamper = backend.execute({ pluginId: HOSTILE, handlerId: 'tamper-globals' });
    const behind = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'behind' });
    const [t, b] = await Promise.all([tamper, behind]);
    expect(t.meta.workerId).toBeDefined();
    expect(okData(b)).toBe('behind');
    expect(b.meta.workerId).not.toBe(t.meta.workerId);
    expect(await runners(backend)).toMatchObject({ retired: { 'globals-tampered': 1 }, redispatched: 1 });
  });

  it('shutdown() drains what waits behind a running execution, and fails it as queued once its timeout has passed', async () => {
    const drained = await warm();
    const first = drained.execute({ pluginId: POOL, handlerId: 'busy', input: { ms: 100 } });
    const behind = drained.execute({ pluginId: POOL, handlerId: 'marks-start', input: { dir: marks, name: 'drained' } });
    await drained.shutdown({ timeoutMs: 5000 });
    expectOk(await first);
    expectOk(await behind);

    const stopped = await warm();
    const stuck = stopped.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 60_000 });
    const waiting = stopped.execute({ pluginId: POOL, handlerId: 'marks-start', input: { dir: marks, name: 'never-started' } });
    await waitFor(async () => (await runners(stopped)).staged === 1);
    await stopped.shutdown({ timeoutMs: 100 });
    expectError(await stuck, 'SHUTTING_DOWN');
    const w = await waiting;
    expectError(w, 'SHUTTING_DOWN');
    expect(w.error.details).toMatchObject({ phase: 'queued' });
    expect(await exists('never-started.started')).toBe(false);
  });

  it.each([0, 5000])('with spinWaitUs %i, executions one after another all run, and a busy-waiting thread is never blamed for a leftover handle', async (spinWaitUs) => {
    const backend = await warm({ spinWaitUs, maxThreads: 2 });
    for (let i = 0; i < 50; i++) expect(okData(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i }))).toBe(i);
    await Promise.all(Array.from({ length: 20 }, (_, i) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i }).then((r) => expect(okData(r)).toBe(i))));
    // A handler that does leave a timer still gets its thread retired.
    expectOk(await backend.execute({ pluginId: POOL, handlerId: 'leaves-interval' }));
    await waitFor(async () => (await runners(backend)).retired['handles-left'] === 1);
    expect(await runners(backend)).toMatchObject({ retired: { 'globals-tampered': 0, 'handles-left': 1 }, crashed: 0, terminated: 0 });
  });

  it('executions that arrive as a thread ends its wait for the next one (LINGER_MS) each run exactly once', async () => {
    // A thread in session waits LINGER_MS for its next execution; one handed over as it gives up
    // is taken back and placed again. Arrivals spread around that moment hit the race both ways.
    const backend = await warm({ maxThreads: 2, minThreads: 2 });
    for (let i = 0; i < 40; i++) {
      const name = `linger-${i}`;
      const [a, b] = await Promise.all([
        backend.execute({ pluginId: POOL, handlerId: 'appends', input: { dir: marks, name: `${name}-a` } }),
        backend.execute({ pluginId: POOL, handlerId: 'appends', input: { dir: marks, name: `${name}-b` } }),
      ]);
      expect(okData(a)).toEqual({ appended: `${name}-a` });
      expect(okData(b)).toEqual({ appended: `${name}-b` });
      await sleep(6 + (i % 9));
    }
    for (let i = 0; i < 40; i++) {
      for (const side of ['a', 'b']) expect(await readFile(path.join(marks, `linger-${i}-${side}`), 'utf8')).toBe('x');
    }
    expect(await runners(backend)).toMatchObject({ busy: 0, staged: 0, held: 0, crashed: 0, terminated: 0 });
    expect((await backend.stats()).byOutcome).toMatchObject({ ok: 81 });
  });

  it('moves an execution waiting behind a slow handler to a thread that falls idle', async () => {
    const backend = backends.make({ maxThreads: 2, minThreads: 2, workspace: false });
    await Promise.all([1, 2].map((i) => backend.execute({ pluginId: POOL, handlerId: 'busy', input: { ms: 20 * i } })));
    const done: string[] = [];
    const track = (name: string, p: Promise<unknown>) => p.then((r) => (done.push(name), r));
    const slow = track('slow', backend.execute({ pluginId: POOL, handlerId: 'busy', input: { ms: 1500 } }));
    const quick = track('quick', backend.execute({ pluginId: POOL, handlerId: 'busy', input: { ms: 50 } }));
    // Handed to the first thread with room behind its running execution: the slow one's.
    const third = track('third', backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'third' }));
    await Promise.all([slow, quick, third]);
    expect(done).toEqual(['quick', 'third', 'slow']);
  });

  it('never runs more executions at once than maxConcurrency, though threads could take more', async () => {
    const backend = backends.make({ maxThreads: 3, minThreads: 3, maxConcurrency: 1 });
    const results = await Promise.all(Array.from({ length: 5 }, () => backend.execute({ pluginId: POOL, handlerId: 'span', input: { ms: 40 } })));
    const spans = results.map((r) => okData<{ start: number; end: number }>(r)).sort((a, b) => a.start - b.start);
    for (let i = 1; i < spans.length; i++) expect(spans[i]!.start).toBeGreaterThanOrEqual(spans[i - 1]!.end);
  });

  it('a mixed storm (crashes, timeouts, aborts, echoes; 32 in flight on 2 threads) settles every execution once, as its kind says, and leaves nothing waiting', async () => {
    const backend = backends.make({ maxThreads: 2, minThreads: 2, workspace: false, abortGraceMs: 50 });
    const kinds = ['echo', 'echo', 'echo', 'exit', 'loop', 'abort', 'throw'] as const;
    const plan = Array.from({ length: 210 }, (_, i) => kinds[i % kinds.length]!);
    const seen = new Map<string, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < plan.length) {
          const i = next++;
          const kind = plan[i]!;
          if (kind === 'echo') {
            const r = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i });
            expect(okData(r)).toBe(i);
          } else if (kind === 'exit') {
            expectError(await backend.execute({ pluginId: HOSTILE, handlerId: 'exit' }), 'WORKER_CRASHED');
          } else if (kind === 'loop') {
            expectError(await backend.execute({ pluginId: HOSTILE, handlerId: 'busy-loop' }, { timeoutMs: 100 }), 'TIMEOUT');
          } else if (kind === 'throw') {
            expectError(await backend.execute({ pluginId: BASIC, handlerId: 'throws' }), 'HANDLER_ERROR');
          } else {
            const controller = new AbortController();
            const pending = backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { signal: controller.signal, timeoutMs: 60_000 });
            setTimeout(() => controller.abort(), i % 3);
            expectError(await pending, 'ABORTED');
          }
          seen.set(kind, (seen.get(kind) ?? 0) + 1);
        }
      }),
    );
    expect([...seen.values()].reduce((a, b) => a + b, 0)).toBe(plan.length);
    expect(await backend.stats()).toMatchObject({ active: 0, queued: 0 });
    expect(await runners(backend)).toMatchObject({ busy: 0, staged: 0, held: 0 });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });

  it('runs 2,000 executions with 64 in flight on 2 threads: every one answered once, nothing left waiting', async () => {
    const backend = backends.make({ maxThreads: 2, minThreads: 2, workspace: false });
    let next = 0;
    const seen = new Set<number>();
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < 2000) {
          const i = next++;
          const r = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i });
          expect(okData(r)).toBe(i);
          seen.add(i);
        }
      }),
    );
    expect(seen.size).toBe(2000);
    expect(await backend.stats()).toMatchObject({ active: 0, queued: 0 });
    expect(await runners(backend)).toMatchObject({ busy: 0, staged: 0, held: 0, crashed: 0, terminated: 0 });
  });
});
