import { SpanKind } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { expect, it } from 'vitest';
import { expectError, expectOk, waitFor } from '../expect-result.js';
import { BASIC, HOSTILE } from '../fixtures.js';
import type { SuiteContext } from '../suite-context.js';
import { total, type TestSdk } from '../telemetry-sdk.js';
import { HANDLER, OUTCOME, PLUGIN, executionSpan } from './telemetry-spans.js';

const SCOPE = '@kb-labs/plugin-execution';

/** Every attribute docs/observability.md lists for the execution span: nothing else (no input, context or environment) goes on it. */
const SPAN_ATTRIBUTES = new Set([
  'kb.plugin_execution.backend',
  PLUGIN,
  HANDLER,
  'kb.plugin_execution.plugin.version',
  'kb.plugin_execution.execution.id',
  OUTCOME,
  'error.type',
  'kb.plugin_execution.queue_wait_ms',
  'kb.plugin_execution.run_ms',
  'kb.plugin_execution.timeout_ms',
  'kb.plugin_execution.runner.id',
  'process.pid',
  'thread.id',
  'kb.plugin_execution.runner.host',
]);

/** The metric instruments docs/observability.md lists, with their kind and unit. */
const INSTRUMENTS: Record<string, { type: string; unit: string }> = {
  'kb.plugin_execution.duration': { type: 'HISTOGRAM', unit: 's' },
  'kb.plugin_execution.queue.wait_time': { type: 'HISTOGRAM', unit: 's' },
  'kb.plugin_execution.executions': { type: 'COUNTER', unit: '{execution}' },
  'kb.plugin_execution.running': { type: 'UP_DOWN_COUNTER', unit: '{execution}' },
  'kb.plugin_execution.queued': { type: 'UP_DOWN_COUNTER', unit: '{execution}' },
};

/** An OpenTelemetry HrTime ([seconds, nanoseconds]) in milliseconds. */
function milliseconds([seconds, nanos]: [number, number]): number {
  return seconds * 1000 + nanos / 1e6;
}

/** The attributes of the execution's event named `name`, which it must have once. */
function eventAttributes(span: ReadableSpan, name: string): Record<string, unknown> {
  const events = span.events.filter((event) => event.name === name);
  expect(events.map((event) => event.name), `the ${name} event`).toEqual([name]);
  return { ...events[0]!.attributes };
}

/** What the span, its events and the instruments carry, field by field as docs/observability.md lists them. */
export function recordTests(suite: SuiteContext, sdk: () => TestSdk): void {
  it("the span's kind, scope and attributes: the documented ones only, none of the input's or context's values", async () => {
    const secret = 'input-secret-7f3a';
    const result = await suite.make().execute({ pluginId: BASIC, handlerId: 'echo', input: { secret } }, { timeoutMs: 20_000 });
    expectOk(result);
    const span = executionSpan(sdk().spans(), result);
    expect(span.kind).toBe(suite.capabilities.remoteRunners ? SpanKind.CLIENT : SpanKind.INTERNAL);
    expect(span.instrumentationScope.name).toBe(SCOPE);
    expect(Object.keys(span.attributes).filter((key) => !SPAN_ATTRIBUTES.has(key))).toEqual([]);
    expect(JSON.stringify(span.attributes)).not.toContain(secret);
    expect(span.attributes).toMatchObject({ 'kb.plugin_execution.timeout_ms': 20_000, 'kb.plugin_execution.runner.id': result.meta.runnerId });
    // Each runner attribute exactly when meta has it.
    const runner = { 'process.pid': result.meta.pid, 'thread.id': result.meta.workerId, 'kb.plugin_execution.runner.host': result.meta.runnerHost };
    for (const [key, value] of Object.entries(runner)) expect(span.attributes[key], key).toBe(value);
  });

  it('the span runs from the execute() call to the result: its start is that of execute(), its length meta.durationMs', async () => {
    // The first execution of a new backend: it waits for the plugins to load before its handler is known.
    // Read from the clock the span's times come from (Date.now() may be slewed apart from it).
    const before = performance.timeOrigin + performance.now();
    const result = await suite.make().execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 20_000 });
    expectOk(result);
    const span = executionSpan(sdk().spans(), result);
    // Both ends are set from the one clock meta is measured by: equal up to float rounding (well under a microsecond).
    expect(Math.abs(milliseconds(span.duration) - result.meta.durationMs)).toBeLessThan(0.002);
    expect(milliseconds(span.startTime)).toBeGreaterThanOrEqual(before - 0.01);
  });

  it("a platform call's span says the service and method a handler chose cut at 64 characters each, in its name and attributes", async () => {
    const method = 'm'.repeat(100);
    const backend = suite.make({ permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method } });
    expectOk(result);
    const execution = executionSpan(sdk().spans(), result).spanContext().spanId;
    const calls = sdk().spans().filter((span) => span.parentSpanContext?.spanId === execution && span.name.startsWith('platform '));
    expect(calls.map((span) => span.name)).toEqual([`platform kv.${'m'.repeat(64)}…`]);
    expect(calls[0]!.attributes).toMatchObject({ 'kb.plugin_execution.platform.service': 'kv', 'kb.plugin_execution.platform.method': `${'m'.repeat(64)}…` });
    // A service name too: one the handler may not call is refused, its span recorded all the same.
    const service = 's'.repeat(100);
    const refused = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { service, method: 'get' } });
    expectOk(refused);
    const refusedExecution = executionSpan(sdk().spans(), refused).spanContext().spanId;
    const refusedCalls = sdk().spans().filter((span) => span.parentSpanContext?.spanId === refusedExecution && span.name.startsWith('platform '));
    expect(refusedCalls.map((span) => span.name)).toEqual([`platform ${'s'.repeat(64)}….get`]);
    expect(refusedCalls[0]!.attributes).toMatchObject({ 'kb.plugin_execution.platform.service': `${'s'.repeat(64)}…`, 'kb.plugin_execution.platform.method': 'get', 'kb.plugin_execution.permission_denied': true });
  });

  it("a platform call's span names what a host service threw by its error's name, cut at 64 characters as the names it says", async () => {
    const name = 'E'.repeat(100);
    const fail = async () => Promise.reject(Object.assign(new Error('refused by the host'), { name }));
    const backend = suite.make({ platform: { kv: { fail } }, permissions: { platform: { kv: true } } });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'fail' } });
    expectOk(result);
    const execution = executionSpan(sdk().spans(), result).spanContext().spanId;
    const call = sdk().spans().find((span) => span.parentSpanContext?.spanId === execution && span.name === 'platform kv.fail');
    expect(call?.attributes).toMatchObject({ [OUTCOME]: `${'E'.repeat(64)}…`, 'error.type': `${'E'.repeat(64)}…` });
  });

  it("a request too malformed to name a handler: a span named `execute` alone, VALIDATION_ERROR on it", async () => {
    const result = await suite.make().execute({ handlerId: 'echo' } as never);
    expectError(result, 'VALIDATION_ERROR');
    const span = executionSpan(sdk().spans(), result);
    expect(span.name).toBe('execute');
    expect(span.attributes).toMatchObject({ 'error.type': 'VALIDATION_ERROR', [OUTCOME]: 'VALIDATION_ERROR' });
  });

  it('a timeout, an abort and a crash: each event says what stopped it (the time limit, the crash reason)', async () => {
    const backend = suite.make();
    const timedOut = await backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 10_000 } }, { timeoutMs: 200 });
    expectError(timedOut, 'TIMEOUT');
    expect(eventAttributes(executionSpan(sdk().spans(), timedOut), 'kb.plugin_execution.timeout')).toEqual({ 'error.type': 'TIMEOUT', 'kb.plugin_execution.timeout_ms': 200 });
    const controller = new AbortController();
    const aborted = await backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 10_000 } }, { signal: controller.signal, onEvent: () => controller.abort() });
    expectError(aborted, 'ABORTED');
    expect(eventAttributes(executionSpan(sdk().spans(), aborted), 'kb.plugin_execution.abort')).toEqual({ 'error.type': 'ABORTED' });
    if (!suite.capabilities.isolatesCrashes) return;
    const crashed = await backend.execute({ pluginId: HOSTILE, handlerId: 'exit', input: { code: 3 } }, { timeoutMs: 20_000 });
    expectError(crashed, 'WORKER_CRASHED');
    expect(eventAttributes(executionSpan(sdk().spans(), crashed), 'kb.plugin_execution.crash')).toEqual({ 'error.type': 'WORKER_CRASHED', 'kb.plugin_execution.crash.reason': crashed.error.details.reason });
  });

  it('shutdown() stopping a running and a queued execution: SHUTTING_DOWN on each span, with the shutdown event; running counted by plugin and handler until then', async () => {
    const backend = suite.make({ maxConcurrency: 1 });
    let started = false;
    const running = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 30_000 } }, { timeoutMs: 60_000, onEvent: () => (started = true) });
    const queued = backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    await waitFor(async () => started && (await backend.stats()).queued === 1);
    expect(total(await sdk().points('kb.plugin_execution.running'), { [PLUGIN]: BASIC, [HANDLER]: 'slow' })).toBe(1);
    await backend.shutdown({ timeoutMs: 100 });
    for (const result of [await running, await queued]) {
      expectError(result, 'SHUTTING_DOWN');
      const span = executionSpan(sdk().spans(), result);
      expect(span.attributes).toMatchObject({ 'error.type': 'SHUTTING_DOWN', [OUTCOME]: 'SHUTTING_DOWN' });
      expect(eventAttributes(span, 'kb.plugin_execution.shutdown')).toEqual({ 'error.type': 'SHUTTING_DOWN' });
    }
  });

  it('instruments of the documented kinds and units (durations in seconds, buckets from 0.1 ms to 5 min); queue wait only for executions that were dispatched', async () => {
    const backend = suite.make();
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    expectError(await backend.execute({ pluginId: BASIC, handlerId: 'no-such-handler' }), 'HANDLER_NOT_FOUND');
    const found = await sdk().instruments();
    for (const [name, { type, unit }] of Object.entries(INSTRUMENTS)) {
      expect(found.find((instrument) => instrument.name === name), name).toMatchObject({ scope: SCOPE, type, unit });
    }
    for (const name of ['kb.plugin_execution.duration', 'kb.plugin_execution.queue.wait_time']) {
      const boundaries = found.find((instrument) => instrument.name === name)?.boundaries ?? [];
      expect([boundaries[0], boundaries.at(-1)], name).toEqual([0.0001, 300]);
    }
    expect(total(await sdk().points('kb.plugin_execution.executions'), { [OUTCOME]: 'HANDLER_NOT_FOUND' })).toBe(1);
    expect(total(await sdk().points('kb.plugin_execution.queue.wait_time'), { [OUTCOME]: 'HANDLER_NOT_FOUND' })).toBe(0);
    expect(total(await sdk().points('kb.plugin_execution.queue.wait_time'), { [OUTCOME]: 'ok' })).toBe(1);
  });
}
