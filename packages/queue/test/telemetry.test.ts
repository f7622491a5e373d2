/**
 * The caller's trace continued on a worker machine: the host's execution span (CLIENT) goes with
 * the task as a W3C traceparent, and a worker with an OpenTelemetry SDK records its own execution
 * as a child of it. Real SDKs on both sides, a real worker process, a real nats-server.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SpanKind, context, trace } from '@opentelemetry/api';
import { BASIC, expectOk, fixturePlugins, installTestSdk, waitFor, type TestSdk } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { natsServer, newPool, startWorker, type WorkerProcess } from './helpers.js';

interface WorkerSpan {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  attributes: Record<string, unknown>;
}

let server: { url: string; stop(): Promise<void> };
let worker: WorkerProcess;
let dir: string;
let spansFile: string;
const pool = newPool('otel');

beforeAll(async () => {
  server = await natsServer();
  dir = await mkdtemp(path.join(os.tmpdir(), 'kb-queue-otel-'));
  spansFile = path.join(dir, 'worker-spans.jsonl');
  worker = await startWorker({ natsUrl: server.url, pool, backend: 'in-process', concurrency: 1, plugins: [fixturePlugins.basic], otelSpansFile: spansFile });
}, 60_000);

afterAll(async () => {
  await worker?.stop();
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function workerSpans(): Promise<WorkerSpan[]> {
  return (await readFile(spansFile, 'utf8').catch(() => '')).split('\n').filter(Boolean).map((line) => JSON.parse(line) as WorkerSpan);
}

it("continues the caller's trace on the worker: the worker's execution span is a child of the host's", async () => {
  let sdk: TestSdk | undefined = installTestSdk();
  const backend = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic], workspace: false });
  try {
    const result = await trace.getTracer('test').startActiveSpan('request-active', async (active) => {
      const r = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'traced' });
      active.end();
      return r;
    });
    expectOk(result);
    const host = sdk.spans().find((span) => span.name === `execute ${BASIC}/echo`);
    expect(host, 'the host records its execution span').toBeDefined();
    expect(host!.kind).toBe(SpanKind.CLIENT);
    const { traceId, spanId } = host!.spanContext();
    await waitFor(async () => (await workerSpans()).some((span) => span.name === `execute ${BASIC}/echo`), 10_000);
    const remote = (await workerSpans()).find((span) => span.name === `execute ${BASIC}/echo`)!;
    expect(remote.traceId).toBe(traceId);
    expect(remote.parentSpanId).toBe(spanId);
    expect(remote.attributes['kb.plugin_execution.execution.id']).toBe(result.meta.executionId);
  } finally {
    await backend.shutdown({ timeoutMs: 2000 });
    await sdk?.uninstall();
    sdk = undefined;
  }
});

it("continues a caller's trace whose ids are upper-case hex (as a B3 or other propagator may give them): the task carries a W3C traceparent the worker takes", async () => {
  let sdk: TestSdk | undefined = installTestSdk();
  const backend = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic], workspace: false });
  try {
    // The API takes upper-case hex ids as valid; a W3C traceparent has them lower-case only.
    const parent = trace.setSpanContext(context.active(), { traceId: '4BF92F3577B34DA6A3CE929D0E0E4736', spanId: '00F067AA0BA902B7', traceFlags: 1, isRemote: true });
    const result = await context.with(parent, () => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'upper' }));
    expectOk(result);
    expect(result.data).toBe('upper');
    await waitFor(async () => (await workerSpans()).some((span) => span.attributes['kb.plugin_execution.execution.id'] === result.meta.executionId), 10_000);
    const remote = (await workerSpans()).find((span) => span.attributes['kb.plugin_execution.execution.id'] === result.meta.executionId)!;
    expect(remote.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  } finally {
    await backend.shutdown({ timeoutMs: 2000 });
    await sdk?.uninstall();
    sdk = undefined;
  }
});
