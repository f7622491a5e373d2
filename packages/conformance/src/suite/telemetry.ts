import type { ErrorCode, ExecutionResult, LogEntry } from '@kb-labs/plugin-execution-core';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectError, expectOk, waitFor } from '../expect-result.js';
import { BASIC, GUARDED, HOSTILE } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';
import { installFailingSdk, installHalfBrokenSdk, installTestSdk, total, type TestSdk } from '../telemetry-sdk.js';
import { recordTests } from './telemetry-records.js';
import { HANDLER, OUTCOME, PLUGIN, executionSpan } from './telemetry-spans.js';
import { testPlatform } from '../test-platform.js';

/** A remote caller's span, as a queue worker receives it. */
const REMOTE_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const REMOTE_SPAN = '00f067aa0ba902b7';
/** The `traced` handler calls kv.get (declared) and kv.delete (not). */
const KV = { permissions: { platform: { kv: true as const } } };

/** Traces and metrics through OpenTelemetry, with the real SDK registered, the same on every backend (docs/observability.md). */
export function describeTelemetry(suite: SuiteContext): void {
  describe('OpenTelemetry', () => {
    describe('with an SDK registered', () => {
      let sdk: TestSdk;
      beforeEach(() => {
        sdk = installTestSdk();
      });
      afterEach(async () => {
        await sdk.uninstall();
      });
      spanTreeTests(suite, () => sdk);
      failureTests(suite, () => sdk);
      metricTests(suite, () => sdk);
      recordTests(suite, () => sdk);
    });
    withoutSdkTests(suite);
    failingSdkTests(suite);
  });
}

/** An SDK that throws: executions and their platform calls go on as without one; a warning says it once. */
function failingSdkTests(suite: SuiteContext): void {
  it.each(['tracer', 'meter', 'context-twice', 'context-later'] as const)("an SDK whose %s breaks changes no result: a platform call's value still reaches the handler, and each execution runs once", async (part) => {
    const sdk = installFailingSdk(part);
    try {
      const platform = testPlatform();
      const backend = suite.make({ ...KV, platform });
      // Before: with the tracer, the handler got the span processor's error in place of kv.get's
      // value (HANDLER_ERROR); with the meter, worker-pool started no thread (VALIDATION_ERROR).
      for (let i = 0; i < 2; i++) {
        const result = await backend.execute({ pluginId: BASIC, handlerId: 'traced' });
        expectOk(result);
        expect(result.data).toMatchObject({ value: 'hello', denied: 'PERMISSION_DENIED' });
      }
      // Before: a context manager that called its function twice dispatched each execution twice.
      expect(platform.calls.filter((call) => call.method === 'get')).toHaveLength(2);
      expectError(await backend.execute({ pluginId: BASIC, handlerId: 'never-resolves' }, { timeoutMs: 100 }), 'TIMEOUT');
    } finally {
      await sdk.uninstall();
    }
  });

  it.each(['tracer', 'meter'] as const)('an SDK whose %s breaks leaves the other signal recorded', async (broken) => {
    const sdk = installHalfBrokenSdk(broken);
    try {
      const result = await suite.make().execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
      expectOk(result);
      // Before: a meter that threw at getMeter left the execution untraced; a span that threw as it
      // ended kept the execution's metrics from being recorded.
      if (broken === 'meter') executionSpan(sdk.spans(), result);
      else expect(total(await sdk.points('kb.plugin_execution.executions'), { [HANDLER]: 'echo', [OUTCOME]: 'ok' })).toBe(1);
    } finally {
      await sdk.uninstall();
    }
  });
}

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

/** The execution's span, its place in the caller's trace, its platform calls, and what the handler and onLog see of it. */
function spanTreeTests(suite: SuiteContext, sdk: () => TestSdk): void {
  it('an execution is a span under the caller’s active span, each platform call a span under it', async () => {
    const backend = suite.make(KV);
    const logs: LogEntry[] = [];
    const tracer = trace.getTracer('conformance');
    const { result, caller } = await tracer.startActiveSpan('caller', async (span) => {
      const executed = await backend.execute({ pluginId: BASIC, handlerId: 'traced' }, { onLog: (entry) => logs.push(entry) });
      span.end();
      return { result: executed, caller: span.spanContext() };
    });
    expectOk(result);
    const spans = sdk().spans();
    const execution = executionSpan(spans, result);
    expect(execution.name).toBe(`execute ${BASIC}/traced`);
    expect([SpanKind.INTERNAL, SpanKind.CLIENT]).toContain(execution.kind);
    expect(execution.spanContext().traceId).toBe(caller.traceId);
    expect(parentOf(execution)).toBe(caller.spanId);
    expect(execution.status.code).not.toBe(SpanStatusCode.ERROR);
    expect(execution.attributes).toMatchObject({
      'kb.plugin_execution.backend': suite.name,
      [PLUGIN]: BASIC,
      'kb.plugin_execution.plugin.version': '1.0.0',
      [HANDLER]: 'traced',
      [OUTCOME]: 'ok',
      'kb.plugin_execution.run_ms': result.meta.runMs,
      'kb.plugin_execution.queue_wait_ms': result.meta.queueWaitMs,
      'kb.plugin_execution.runner.id': result.meta.runnerId,
    });
    const children = spans.filter((span) => parentOf(span) === execution.spanContext().spanId && span.name.startsWith('platform '));
    const get = children.find((span) => span.name === 'platform kv.get');
    const denied = children.find((span) => span.name === 'platform kv.delete');
    expect(get?.attributes).toMatchObject({ 'kb.plugin_execution.platform.service': 'kv', 'kb.plugin_execution.platform.method': 'get', [OUTCOME]: 'ok' });
    // Refused by the host's gateway on every backend (a queue worker forwards the call to it).
    expect(denied?.attributes).toMatchObject({ 'kb.plugin_execution.permission_denied': true, 'error.type': 'PERMISSION_DENIED', [OUTCOME]: 'PERMISSION_DENIED' });
    expect(denied?.status.code).toBe(SpanStatusCode.ERROR);
    expect(result.data).toMatchObject({ value: 'hello', denied: 'PERMISSION_DENIED' });
    expectTraceparentOf(spans, execution, (result.data as { traceparent: string }).traceparent);
    const line = logs.find((entry) => entry.message === 'traced');
    expect(line).toMatchObject({ traceId: caller.traceId, spanId: execution.spanContext().spanId });
  });

  it("onStart, onLog and onEvent run with the execution's own span active, never another execution's", async () => {
    const backend = suite.make({ maxConcurrency: 1 });
    const tracer = trace.getTracer('conformance');
    for (let i = 0; i < 3; i++) {
      const active: string[] = [];
      const seen = (which: string) => () => void active.push(`${which} ${trace.getActiveSpan()?.spanContext().spanId ?? 'none'}`);
      const result = await tracer.startActiveSpan(`caller-${i}`, async (span) => {
        const executed = await backend.execute({ pluginId: BASIC, handlerId: 'emits' }, { onStart: seen('onStart'), onLog: seen('onLog'), onEvent: seen('onEvent') });
        span.end();
        return executed;
      });
      expectOk(result);
      const own = executionSpan(sdk().spans(), result).spanContext().spanId;
      // Before: on the queue backend every callback after the first execution's ran in that
      // execution's span (another caller's trace); on worker-pool, onLog and onEvent in none.
      expect(new Set(active.map((entry) => entry.split(' ')[0]))).toEqual(new Set(['onStart', 'onLog', 'onEvent']));
      expect(active.filter((entry) => !entry.endsWith(` ${own}`))).toEqual([]);
    }
  });

  it("a platform call's span says what a host service threw that is not an Error, as the handler is told", async () => {
    const platform = { kv: { fail: async () => Promise.reject('a string of the host') } };
    const backend = suite.make({ platform, permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'fail' } });
    expectOk(result);
    const execution = executionSpan(sdk().spans(), result);
    const call = sdk().spans().find((span) => parentOf(span) === execution.spanContext().spanId && span.name === 'platform kv.fail');
    expect(call?.status.code).toBe(SpanStatusCode.ERROR);
    expect(call?.status.message).toMatch(/: The service threw a string: a string of the host$/);
  });

  it('continues a remote parent given as ExecuteOptions.traceparent', async () => {
    const backend = suite.make(KV);
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'traced' }, { traceparent: `00-${REMOTE_TRACE}-${REMOTE_SPAN}-01` });
    expectOk(result);
    const execution = executionSpan(sdk().spans(), result);
    expect(execution.spanContext().traceId).toBe(REMOTE_TRACE);
    expect(parentOf(execution)).toBe(REMOTE_SPAN);
    expect(execution.parentSpanContext?.isRemote).toBe(true);
    expect((result.data as { traceparent: string }).traceparent).toMatch(new RegExp(`^00-${REMOTE_TRACE}-[0-9a-f]{16}-01$`));
  });
}

/**
 * `ctx.traceparent` names the execution's span, or (a backend whose runner records its own side,
 * such as a queue worker with an SDK) a span below it in the same trace.
 */
function expectTraceparentOf(spans: ReadableSpan[], execution: ReadableSpan, traceparent: string): void {
  const [version, traceId, spanId, flags] = traceparent.split('-');
  expect({ version, traceId, flags }).toEqual({ version: '00', traceId: execution.spanContext().traceId, flags: '01' });
  const bySpanId = new Map(spans.map((span) => [span.spanContext().spanId, span]));
  let at: string | undefined = spanId;
  while (at !== undefined && at !== execution.spanContext().spanId) at = bySpanId.get(at) ? parentOf(bySpanId.get(at)!) : undefined;
  expect(at, `ctx.traceparent ${traceparent} is the execution's span or under it`).toBe(execution.spanContext().spanId);
}

interface FailureCase {
  code: ErrorCode;
  run: (suite: SuiteContext) => Promise<ExecutionResult>;
  /** The span event that marks the moment it was decided. */
  event?: string;
  when?: (suite: SuiteContext) => boolean;
}

const FAILURES: FailureCase[] = [
  { code: 'HANDLER_ERROR', run: (s) => s.make().execute({ pluginId: BASIC, handlerId: 'throws' }) },
  { code: 'VALIDATION_ERROR', run: (s) => s.make().execute({ pluginId: BASIC, handlerId: 'validated', input: { name: '' } }) },
  { code: 'HANDLER_NOT_FOUND', run: (s) => s.make().execute({ pluginId: BASIC, handlerId: 'no-such-handler' }) },
  { code: 'PERMISSION_DENIED', run: (s) => s.make().execute({ pluginId: GUARDED, handlerId: 'needs-kv' }) },
  {
    code: 'TIMEOUT',
    event: 'kb.plugin_execution.timeout',
    run: (s) => s.make().execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 10_000 } }, { timeoutMs: 200 }),
  },
  {
    code: 'ABORTED',
    event: 'kb.plugin_execution.abort',
    run: (s) => {
      const controller = new AbortController();
      return s.make().execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 10_000 } }, { signal: controller.signal, onEvent: () => controller.abort() });
    },
  },
  {
    code: 'WORKER_CRASHED',
    event: 'kb.plugin_execution.crash',
    when: (s) => s.capabilities.isolatesCrashes,
    run: (s) => s.make().execute({ pluginId: HOSTILE, handlerId: 'exit', input: { code: 3 } }, { timeoutMs: 20_000 }),
  },
];

/** A failed execution's span: error status with the code and message, the code as `error.type`, an event for a stop or crash. */
function failureTests(suite: SuiteContext, sdk: () => TestSdk): void {
  for (const failure of FAILURES) {
    it.runIf(failure.when?.(suite) ?? true)(`${failure.code}: error status, error.type and outcome on the span`, async () => {
      const result = await failure.run(suite);
      expectError(result, failure.code as ErrorCode);
      const span = executionSpan(sdk().spans(), result);
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.status.message).toBe(`${failure.code}: ${result.error.message}`);
      expect(span.attributes).toMatchObject({ 'error.type': failure.code, [OUTCOME]: failure.code });
      if (failure.event) expect(span.events.map((event) => event.name)).toContain(failure.event);
    });
  }

  it("a long error message is cut in the span's status to 1,024 characters, saying how many were left out (the result keeps its own)", async () => {
    const result = await suite.make().execute({ pluginId: BASIC, handlerId: 'throws', input: { message: 'm'.repeat(100_000) } });
    expectError(result, 'HANDLER_ERROR');
    const whole = `HANDLER_ERROR: ${result.error.message}`;
    const status = executionSpan(sdk().spans(), result).status.message!;
    expect(status).toBe(`${whole.slice(0, 1024)}… (${whole.length - 1024} characters left out)`);
  });

  it('a span ended before its handler was resolved (an input that cannot be sent) still carries the ids it is named after', async () => {
    const result = await suite.make().execute({ pluginId: BASIC, handlerId: 'echo', input: { fn: () => undefined } });
    expectError(result, 'VALIDATION_ERROR');
    const span = executionSpan(sdk().spans(), result);
    expect(span.name).toBe(`execute ${BASIC}/echo`);
    expect(span.attributes).toMatchObject({ [PLUGIN]: BASIC, [HANDLER]: 'echo' });
  });

  it('a span ended before its handler was resolved (an input that cannot be sent, a backend shut down) is a child of the remote parent given as ExecuteOptions.traceparent', async () => {
    const traceparent = `00-${REMOTE_TRACE}-${REMOTE_SPAN}-01`;
    const backend = suite.make();
    const unsendable = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: { fn: () => undefined } }, { traceparent });
    expectError(unsendable, 'VALIDATION_ERROR');
    await backend.shutdown();
    const refused = await backend.execute({ pluginId: BASIC, handlerId: 'echo' }, { traceparent });
    expectError(refused, 'SHUTTING_DOWN');
    for (const result of [unsendable, refused]) {
      const span = executionSpan(sdk().spans(), result);
      // Before: the root of a trace of its own (a queue worker's refusal cut from its caller's trace).
      expect({ traceId: span.spanContext().traceId, parent: parentOf(span) }, result.error.code).toEqual({ traceId: REMOTE_TRACE, parent: REMOTE_SPAN });
    }
  });

  it('an execution aborted while it waits in the queue has the abort event too', async () => {
    const backend = suite.make({ maxConcurrency: 1 });
    const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 300 } });
    const controller = new AbortController();
    const queued = backend.execute({ pluginId: BASIC, handlerId: 'echo' }, { signal: controller.signal });
    await waitFor(async () => (await backend.stats()).queued === 1);
    controller.abort();
    const result = await queued;
    expectError(result, 'ABORTED');
    expect(result.error.details).toMatchObject({ phase: 'queued' });
    expect(executionSpan(sdk().spans(), result).events.map((event) => event.name)).toContain('kb.plugin_execution.abort');
    expectOk(await running);
  });
}

/** Durations, outcomes, running and queued, runner starts and crashes. */
function metricTests(suite: SuiteContext, sdk: () => TestSdk): void {
  it('records duration, queue wait and outcome by code', async () => {
    const backend = suite.make();
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 }));
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'throws' }), 'HANDLER_ERROR');
    const echo = { [PLUGIN]: BASIC, [HANDLER]: 'echo' };
    expect(total(await sdk().points('kb.plugin_execution.executions'), { ...echo, [OUTCOME]: 'ok' })).toBe(2);
    expect(total(await sdk().points('kb.plugin_execution.executions'), { [HANDLER]: 'throws', [OUTCOME]: 'HANDLER_ERROR', 'error.type': 'HANDLER_ERROR' })).toBe(1);
    expect(total(await sdk().points('kb.plugin_execution.duration'), echo)).toBe(2);
    expect(total(await sdk().points('kb.plugin_execution.queue.wait_time'), echo)).toBe(2);
    // Split by outcome, as the docs say (before: backend and ids only).
    expect(total(await sdk().points('kb.plugin_execution.queue.wait_time'), { ...echo, [OUTCOME]: 'ok' })).toBe(2);
    expect(total(await sdk().points('kb.plugin_execution.queue.wait_time'), { [HANDLER]: 'throws', [OUTCOME]: 'HANDLER_ERROR', 'error.type': 'HANDLER_ERROR' })).toBe(1);
  });

  it('counts executions that named no registered handler without the ids they named: ids a caller made up are not a series each', async () => {
    const backend = suite.make();
    for (let i = 0; i < 5; i++) {
      expectError(await backend.execute({ pluginId: `made-up-${i}`, handlerId: 'h' }), 'HANDLER_NOT_FOUND');
      expectError(await backend.execute({ pluginId: BASIC, handlerId: `made-up-${i}` }), 'HANDLER_NOT_FOUND');
    }
    const points = (await sdk().points('kb.plugin_execution.executions')).filter((p) => p.attributes[OUTCOME] === 'HANDLER_NOT_FOUND');
    expect(total(points)).toBe(10);
    // Before: ten series, one per id named.
    expect(points.filter((p) => p.attributes[PLUGIN] !== undefined || p.attributes[HANDLER] !== undefined)).toEqual([]);
    expect(points).toHaveLength(1);
  });

  it('counts running and queued executions while they are', async () => {
    const backend = suite.make({ maxConcurrency: 1 });
    let started = false;
    const first = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 400 } }, { onEvent: () => (started = true) });
    const second = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 10 } });
    await waitFor(async () => started && (await backend.stats()).queued === 1);
    expect(total(await sdk().points('kb.plugin_execution.running'), { [PLUGIN]: BASIC })).toBe(1);
    expect(total(await sdk().points('kb.plugin_execution.queued'), { [PLUGIN]: BASIC })).toBe(1);
    expectOk(await first);
    expectOk(await second);
    expect(total(await sdk().points('kb.plugin_execution.running'))).toBe(0);
    expect(total(await sdk().points('kb.plugin_execution.queued'))).toBe(0);
  });

  // Runners on another machine (a queue's workers: `workspaceOnRunner`) count theirs in their own process.
  it.runIf(suite.capabilities.isolatesCrashes && !suite.capabilities.workspaceOnRunner)('counts runner starts and crashes', async () => {
    const backend = suite.make();
    expectError(await backend.execute({ pluginId: HOSTILE, handlerId: 'exit', input: { code: 3 } }, { timeoutMs: 20_000 }), 'WORKER_CRASHED');
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo' }));
    expect(total(await sdk().points('kb.plugin_execution.runner.starts'), { 'kb.plugin_execution.backend': suite.name })).toBeGreaterThanOrEqual(1);
    expect(total(await sdk().points('kb.plugin_execution.runner.crashes'), { 'kb.plugin_execution.backend': suite.name })).toBe(1);
    // With why: the same reason the execution's WORKER_CRASHED carries.
    expect(total(await sdk().points('kb.plugin_execution.runner.crashes'), { 'kb.plugin_execution.backend': suite.name, 'kb.plugin_execution.crash.reason': 'exit' })).toBe(1);
  });
}

/** No SDK registered: nothing traced, `ctx.traceparent` undefined, or a given parent passed through unchanged. */
function withoutSdkTests(suite: SuiteContext): void {
  it('without an SDK, ctx.traceparent is undefined and log entries carry no ids', async () => {
    const backend = suite.make(KV);
    const logs: LogEntry[] = [];
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'traced' }, { onLog: (entry) => logs.push(entry) });
    expectOk(result);
    expect(result.data).toMatchObject({ traceparent: null, value: 'hello' });
    expect(logs.find((entry) => entry.message === 'traced')).not.toHaveProperty('traceId');
    const given = `00-${REMOTE_TRACE}-${REMOTE_SPAN}-01`;
    const passed = await backend.execute({ pluginId: BASIC, handlerId: 'traced' }, { traceparent: given });
    expectOk(passed);
    expect((passed.data as { traceparent: string }).traceparent).toBe(given);
  });

  it('refuses a malformed ExecuteOptions.traceparent with VALIDATION_ERROR', async () => {
    const result = await suite.make().execute({ pluginId: BASIC, handlerId: 'echo' }, { traceparent: 'not-a-traceparent' });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toContain('traceparent');
  });
}
