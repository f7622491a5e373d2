import { getEventListeners } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AbortedError, TimeoutError, WorkspaceManager, type ExecutionEvent } from '@kb-labs/plugin-execution-core';
import { describe, expect, it, vi } from 'vitest';
import { expectError, expectOk, waitFor } from '../expect-result.js';
import { holdEventLoop } from '../hold-event-loop.js';
import { BASIC, HOSTILE } from '../fixtures.js';
import { SLACK_MS, type SuiteContext } from '../suite-context.js';

/** The `timeoutMs` the basic fixture's manifest gives its `slow-limited` handler. */
const MANIFEST_TIMEOUT_MS = 150;

export function describeTimeLimits(suite: SuiteContext): void {
  describe('time limits and cancellation', () => {
    timeoutTests(suite);
    heldUpHostTests(suite);
    cancellationTests(suite);
    loadStopTests(suite);
    queueTests(suite);
    hostFakeTimersTests(suite);
  });
}

/** Time limits from the request, the manifest and the backend; what a stopped handler sees. */
function timeoutTests(suite: SuiteContext): void {
  const { make, capabilities } = suite;
  it('returns TIMEOUT on time for an async handler that never settles, and keeps serving', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 150 });
    expectError(result, 'TIMEOUT');
    expect(result.error).toBeInstanceOf(TimeoutError);
    expect(result.meta.durationMs).toBeLessThan(150 + SLACK_MS);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });

  it('a handler that blocks its loop past its time limit, then answers, gets TIMEOUT on every backend', async () => {
    const backend = make();
    // 600 ms of synchronous work against a 150 ms limit: in-process, the host's own loop is held throughout.
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'cpu', input: { ms: 600 } }, { timeoutMs: 150 });
    expectError(result, 'TIMEOUT');
    expect(result.error.details).toMatchObject({ timeoutMs: 150 });
  });

  it('a handler timed out while the host had not answered its platform call says which one (a host service waiting for what waits for this one)', async () => {
    const backend = make({ permissions: { platform: { kv: true } } });
    let answer!: () => void;
    const kv = { get: () => new Promise<null>((resolve) => (answer = () => resolve(null))) };
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { service: 'kv', method: 'get', args: ['k'] } }, { platform: { kv } as never, timeoutMs: 1500 });
    answer();
    expectError(result, 'TIMEOUT');
    expect(result.error.message).toContain('did not finish within 1500 ms: the host had not answered its platform.kv.get');
    expect(result.error.details).toMatchObject({ timeoutMs: 1500, waitingFor: ['platform.kv.get'] });
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });

  it('counts the manifest timeout when the request sets none', async () => {
    // The backend's default is far longer and the handler waits for longer still: only the
    // manifest's limit can end it, and the error and meta both name that limit.
    const backend = make({ defaultTimeoutMs: 5000 });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'slow-limited', input: { ms: 10_000 } });
    expectError(result, 'TIMEOUT');
    expect(result.error.details).toMatchObject({ timeoutMs: MANIFEST_TIMEOUT_MS });
    expect(result.meta.timeoutMs).toBe(MANIFEST_TIMEOUT_MS);
    // A request's own limit overrides the manifest's.
    const overridden = await backend.execute({ pluginId: BASIC, handlerId: 'slow-limited', input: { ms: 10 } }, { timeoutMs: 4000 });
    expectOk(overridden);
    expect(overridden.meta.timeoutMs).toBe(4000);
  });

  it("counts the backend's default timeout when neither the request nor the manifest sets one", async () => {
    const backend = make({ defaultTimeoutMs: 120 });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 10_000 } });
    expectError(result, 'TIMEOUT');
    expect(result.error.details).toMatchObject({ timeoutMs: 120 });
    expect(result.meta.timeoutMs).toBe(120);
  });

  it("a time limit of Node's longest timer (2147483647 ms, from the request or the backend's default) runs as any other", async () => {
    const longest = 2_147_483_647;
    const fromRequest = await make().execute({ pluginId: BASIC, handlerId: 'echo', input: 'long' }, { timeoutMs: longest });
    expectOk(fromRequest);
    expect(fromRequest.meta.timeoutMs).toBe(longest);
    const fromDefault = await make({ defaultTimeoutMs: longest }).execute({ pluginId: BASIC, handlerId: 'echo', input: 'long' });
    expectOk(fromDefault);
    expect(fromDefault.data).toBe('long');
  });

  it.runIf(!capabilities.preemptsSyncCode)('fires ctx.signal with the TimeoutError on timeout (backends that cannot stop the handler)', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'respects-signal' }, { timeoutMs: 100 });
    expectError(result, 'TIMEOUT');
    expect(result.meta.artifacts).toEqual(['signal-TIMEOUT.txt']);
  });

  it.runIf(capabilities.preemptsSyncCode)('stops a synchronous busy loop on timeout and keeps serving', async () => {
    const backend = make();
    const result = await backend.execute({ pluginId: HOSTILE, handlerId: 'busy-loop' }, { timeoutMs: 200 });
    expectError(result, 'TIMEOUT');
    expect(result.meta.durationMs).toBeLessThan(200 + SLACK_MS);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });
}

/** An answer that came while the host's own loop was held up past the time limit. */
function heldUpHostTests(suite: SuiteContext): void {
  const { make, capabilities } = suite;
  // Not the queue: a host held up for seconds is a caller lost to its workers (queue.md).
  it.runIf(capabilities.preemptsSyncCode && capabilities.runsHostPlugins !== false)(
    "an answer its thread or process sent within the time limit, read only past it because the host's own loop was held up, is the result, not TIMEOUT",
    async () => {
      const backend = make();
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'warm' }));
      let began!: () => void;
      const begun = new Promise<void>((resolve) => (began = resolve));
      // Its `started` event: the handler runs (a child that has not been handed its task yet waits for the host).
      const pending = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 100 } }, { timeoutMs: 2500, onEvent: () => began() });
      await begun;
      // The host's loop held past the limit (a long synchronous task): the handler answers meanwhile.
      holdEventLoop(3500);
      const result = await pending;
      expectOk(result);
      expect(result.meta.durationMs).toBeGreaterThan(2500);
    },
  );
}

/** The caller's signal, before and during an execution and while it is queued. */
function cancellationTests(suite: SuiteContext): void {
  const { make } = suite;
  it('fires ctx.signal with the AbortedError when the caller aborts', async () => {
    const backend = make();
    const controller = new AbortController();
    // Abort once the handler listens (however long its runner takes to start), not after a guess.
    const logs: string[] = [];
    const events: unknown[] = [];
    const onEvent = (entry: { event: unknown }) => {
      events.push(entry.event);
      controller.abort();
    };
    const pending = backend.execute({ pluginId: BASIC, handlerId: 'respects-signal' }, { signal: controller.signal, onEvent, onLog: (entry) => logs.push(entry.message) });
    const result = await pending;
    expectError(result, 'ABORTED');
    expect(result.meta.artifacts).toEqual(['signal-ABORTED.txt']);
    // What its listener logs or emits comes after the result was decided: dropped on every backend.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(logs).not.toContain('signal fired');
    expect(events).toEqual([{ listening: true }]);
  });

  it('a caller that aborts with an ABORTED error of its own gets its words in the result; any other reason gets ours', async () => {
    const backend = make();
    const ownWords = new AbortController();
    const mine = backend.execute({ pluginId: BASIC, handlerId: 'respects-signal' }, { signal: ownWords.signal, onEvent: () => ownWords.abort(new AbortedError('stopped: the user left the page', { details: { phase: 'running' } })) });
    const result = await mine;
    expectError(result, 'ABORTED');
    expect(result.error.message).toBe('stopped: the user left the page');
    expect(result.error.details).toMatchObject({ phase: 'running' });
    const plain = new AbortController();
    const other = await backend.execute({ pluginId: BASIC, handlerId: 'respects-signal' }, { signal: plain.signal, onEvent: () => plain.abort(new Error('not ours')) });
    expectError(other, 'ABORTED');
    expect(other.error.message).toContain('aborted by the caller');
    // Not its cause either: the error is also the handler's ctx.signal.reason, and the host's object would reach the plugin.
    expect(other.error.cause).toBeUndefined();
  });

  it.each(['message', 'details'])('a caller that aborts with an ABORTED error whose %s cannot be read gets ABORTED in our words, at once (not its time limit, nor an uncaught exception)', async (key) => {
    const backend = make();
    const controller = new AbortController();
    const unreadable = Object.defineProperty(new AbortedError('unread', { details: { phase: 'running' } }), key, { get: () => { throw new Error(`${key} getter`); } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'respects-signal' }, { signal: controller.signal, timeoutMs: 5000, onEvent: () => controller.abort(unreadable) });
    expectError(result, 'ABORTED');
    expect(result.error.message).toContain('aborted by the caller');
  });

  it('ABORTED for a signal aborted before the call, and the handler never runs', async () => {
    const backend = make();
    const events: ExecutionEvent[] = [];
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'emits' }, { signal: AbortSignal.abort(), onEvent: (e) => events.push(e) });
    expectError(result, 'ABORTED');
    expect(result.error).toBeInstanceOf(AbortedError);
    expect(events).toEqual([]);
  });

  it('a burst of calls with a signal aborted before them, while the plugins still load, is ABORTED each and takes no place from a real one', async () => {
    const backend = make({ maxQueue: 2, maxConcurrency: 1 });
    const signal = AbortSignal.abort();
    const burst = Array.from({ length: 20 }, () => backend.execute({ pluginId: BASIC, handlerId: 'echo' }, { signal }));
    const real = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'real' });
    // Before: past maxConcurrency + maxQueue of them, QUEUE_FULL (places among those waiting for
    // the plugins to load), and the real call with them.
    expect(new Set((await Promise.all(burst)).map((r) => (r.ok ? 'ok' : r.error.code)))).toEqual(new Set(['ABORTED']));
    expectOk(await real);
  });

  it('ABORTED for a running execution whose signal fires, and keeps serving', async () => {
    const backend = make();
    const controller = new AbortController();
    const pending = backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { signal: controller.signal, timeoutMs: 20_000 });
    setTimeout(() => controller.abort(), 100);
    const result = await pending;
    expectError(result, 'ABORTED');
    expect(result.meta.durationMs).toBeLessThan(100 + SLACK_MS);
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }));
  });

  it('removes an aborted queued execution without running it', async () => {
    const backend = make({ maxConcurrency: 1 });
    const starts: string[] = [];
    const first = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 400 } }, { onStart: () => void starts.push('first') });
    const controller = new AbortController();
    const events: ExecutionEvent[] = [];
    const queued = backend.execute({ pluginId: BASIC, handlerId: 'emits' }, { signal: controller.signal, onEvent: (e) => events.push(e), onStart: () => void starts.push('queued') });
    await waitFor(async () => (await backend.stats()).queued === 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort();
    const result = await queued;
    expectError(result, 'ABORTED');
    expect(result.error.details).toMatchObject({ phase: 'queued' });
    expect(events).toEqual([]);
    // All it waited was queue wait (at least the 50 ms above), none of it run.
    expect(result.meta.queueWaitMs).toBeGreaterThanOrEqual(45);
    expect(result.meta.runMs).toBe(0);
    expectOk(await first);
    expect((await backend.stats()).queued).toBe(0);
    // onStart: once for the one that ran, by the time it ran; never for the one removed unrun.
    expect(starts).toEqual(['first']);
  });

  it("a signal of the host's own making: one lacking removeEventListener is a VALIDATION_ERROR; one whose removeEventListener throws leaves the host up", async () => {
    const backend = make();
    const partial = { aborted: false, addEventListener: () => undefined };
    const refused = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { signal: partial as unknown as AbortSignal });
    expectError(refused, 'VALIDATION_ERROR');
    expect(refused.error.message).toContain('signal');
    const throwing = {
      aborted: false,
      addEventListener: () => undefined,
      removeEventListener: () => {
        throw new Error('not today');
      },
    };
    // Before: the host process died of the throw (an uncaught exception) once the execution ended.
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 }, { signal: throwing as unknown as AbortSignal }));
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 3 }));
  });

  it('one AbortSignal for a batch: aborting it stops those running and those queued, with no listener-leak warning', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    try {
      const backend = make({ maxConcurrency: 2 });
      const controller = new AbortController();
      let started = 0;
      const options = { signal: controller.signal, timeoutMs: 30_000, onEvent: () => started++ };
      const runs = Array.from({ length: 30 }, () => backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 30_000 } }, options));
      await waitFor(() => started === 2);
      controller.abort();
      const results = await Promise.all(runs);
      for (const result of results) expectError(result, 'ABORTED');
      const phases = results.map((r) => (!r.ok && r.error.code === 'ABORTED' ? r.error.details.phase : undefined));
      expect(phases.filter((phase) => phase === 'running')).toHaveLength(2);
      expect(phases.filter((phase) => phase === 'queued')).toHaveLength(28);
      // Node emits a warning on the next tick of its listener count passing 10.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it("leaves no listener on the caller's signal once an execution settles, however it ended", async () => {
    // A host may give the next execution the same signal (channels reuse a message's controller).
    const backend = make({ maxConcurrency: 1 });
    const signal = new AbortController().signal;
    const listening = () => getEventListeners(signal, 'abort').length;
    const options = { signal };
    const first = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 200 } }, options);
    // Waits in the queue behind the first, then runs.
    const queued = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'queued' }, options);
    await waitFor(() => listening() > 0);
    expectOk(await first);
    expectOk(await queued);
    expect(listening()).toBe(0);
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'throws' }, options), 'HANDLER_ERROR');
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { signal, timeoutMs: 100 }), 'TIMEOUT');
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'no-such-handler' }, options), 'HANDLER_NOT_FOUND');
    expect(listening()).toBe(0);
  });
}

/** Admission: order, and the queue bound. */
function queueTests(suite: SuiteContext): void {
  const { make } = suite;
  it('runs executions in the order admitted, even when the first one\'s workspace is ready last', async () => {
    // Workspace directories are made concurrently; the first takes longer here.
    class SlowFirst extends WorkspaceManager {
      #calls = 0;
      override async acquire(executionId: string) {
        if (this.#calls++ === 0) await new Promise((resolve) => setTimeout(resolve, 100));
        return super.acquire(executionId);
      }
    }
    const backend = make({ maxConcurrency: 1, workspace: new SlowFirst({ root: suite.root() }) });
    const order: string[] = [];
    const run = (name: string) =>
      backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 50 } }).then((r) => {
        expectOk(r);
        order.push(name);
      });
    await Promise.all([run('first'), run('second'), run('third')]);
    expect(order).toEqual(['first', 'second', 'third']);
  });

  it('QUEUE_FULL at once when the queue bound is reached, while the queue is still full', async () => {
    const backend = make({ maxConcurrency: 1, maxQueue: 1 });
    const controller = new AbortController();
    const running = backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { signal: controller.signal, timeoutMs: 60_000 });
    const queued = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 10 } });
    await waitFor(async () => (await backend.stats()).queued === 1);
    // The queue stays full until the abort below: a refusal held until it has room never comes.
    let held: NodeJS.Timeout | undefined;
    const rejected = await Promise.race([backend.execute({ pluginId: BASIC, handlerId: 'echo' }), new Promise<'held'>((resolve) => (held = setTimeout(resolve, SLACK_MS, 'held')))]);
    clearTimeout(held);
    if (rejected === 'held') throw new Error(`QUEUE_FULL not given within ${SLACK_MS} ms while the queue was full`);
    expectError(rejected, 'QUEUE_FULL');
    controller.abort();
    expectError(await running, 'ABORTED');
    expectOk(await queued);
  });
}

/** A stop that comes while the handler's modules load (a slow top-level await): the handler never begins. */
function loadStopTests(suite: SuiteContext): void {
  const { make } = suite;
  it.runIf(suite.capabilities.runsHostPlugins !== false)("an execution aborted while its handler's modules load never begins its handler, even when the load ends within the abort's grace", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kb-abort-load-'));
    try {
      const out = path.join(dir, 'out');
      await mkdir(out);
      // Its top level says it loads, then takes 300 ms (less than the abort's default grace, 500 ms); the handler leaves a file when it begins.
      await writeFile(
        path.join(dir, 'slow.mjs'),
        `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(path.join(out, 'loading'))}, '');\nawait new Promise((resolve) => setTimeout(resolve, 300));\nexport default async () => { writeFileSync(${JSON.stringify(path.join(out, 'ran'))}, ''); return 'ran'; };\n`,
      );
      const permissions = { fs: { write: ['out'] } };
      await writeFile(path.join(dir, 'kb.plugin.json'), JSON.stringify({ id: '@x/abort-load', version: '1.0.0', permissions, handlers: { slow: { entry: './slow.mjs' } } }));
      const backend = make({ plugins: [dir], permissions });
      const controller = new AbortController();
      const pending = backend.execute({ pluginId: '@x/abort-load', handlerId: 'slow' }, { signal: controller.signal });
      await waitFor(() => existsSync(path.join(out, 'loading')), 15_000);
      controller.abort();
      expectError(await pending, 'ABORTED');
      // Past the load's end and any grace: the handler never began.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      expect(existsSync(path.join(out, 'ran'))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

/** Taken when the suite loads, before any test fakes the timers: how long a faked host waits at most. */
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

/** `promise`, or a failure naming `what` once 10 s of real time have passed without it settling. */
function settledInRealTime<T>(promise: Promise<T>, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = realSetTimeout(() => reject(new Error(`${what}: not settled after 10 s of real time under the host's fake timers`)), 10_000);
    promise.then(resolve, reject).finally(() => realClearTimeout(timer));
  });
}

/** A host whose test suite fakes the timers once the backend runs (vitest's vi.useFakeTimers(), @sinonjs/fake-timers). */
function hostFakeTimersTests(suite: SuiteContext): void {
  const { make, capabilities } = suite;
  it("time limits and shutdown() keep real time under a host's fake timers (every timer, Date and performance faked, the clock never moved)", async () => {
    const backend = make();
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'before' }));
    vi.useFakeTimers();
    try {
      expectOk(await settledInRealTime(backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'faked' }), 'echo'));
      // Before: the limit's timer was the host's fake one, and the execution never ended.
      const result = await settledInRealTime(backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 150 }), 'never-resolves, timeoutMs 150');
      expectError(result, 'TIMEOUT');
      // Measured on the real clock, not the host's stopped one (before: 0).
      expect(result.meta.durationMs).toBeGreaterThanOrEqual(140);
      if (capabilities.preemptsSyncCode) {
        expectError(await settledInRealTime(backend.execute({ pluginId: HOSTILE, handlerId: 'busy-loop' }, { timeoutMs: 150 }), 'busy-loop, timeoutMs 150'), 'TIMEOUT');
      }
      await settledInRealTime(backend.shutdown({ timeoutMs: 500 }), 'shutdown()');
    } finally {
      vi.useRealTimers();
    }
  });
}
