import { BASIC, expectError, expectOk, fixturePlugins, testPlatform } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionEvent, LogEntry } from '@kb-labs/plugin-execution-core';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { QUEUE_PLUGIN, QUEUE_PROBE, expectEventWarnedInItsPlace, newPool, startWorkers, type WorkerProcess } from './helpers.js';

// A server with NATS's default max_payload (1 MB): every large body travels in parts, both ways.
const pool = newPool('small-payload');
let server: Awaited<ReturnType<typeof startNatsServer>>;
let workers: WorkerProcess[] = [];
let backend: QueueBackend;

beforeAll(async () => {
  server = await startNatsServer({ maxPayload: '1MB' });
  workers = await startWorkers(1, { natsUrl: server.url, pool, backend: 'in-process', concurrency: 2 });
  backend = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic, QUEUE_PLUGIN], platform: testPlatform(), permissions: { platform: { kv: true } } });
}, 60_000);

afterAll(async () => {
  await backend?.shutdown({ timeoutMs: 2000 });
  await Promise.all(workers.map((w) => w.stop()));
  await server?.stop();
});

const MB5 = 5 * 1000 * 1000;

it('carries a 5 MB input and result over a 1 MB max_payload', async () => {
  const input = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'i'.repeat(MB5) });
  expectOk(input);
  expect(input.data).toEqual({ length: MB5 });
  const output = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: { returnBytes: MB5 } });
  expectOk(output);
  expect((output.data as string).length).toBe(MB5);
});

it('carries large platform call arguments and replies both ways', async () => {
  const big = 'p'.repeat(3 * 1000 * 1000);
  const result = await backend.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'echo', args: [big] } });
  expectOk(result);
  expect((result.data as { value: string }).value.length).toBe(big.length);
});

it('carries a large event, and the lines after it still arrive', async () => {
  const events: ExecutionEvent[] = [];
  const logs: LogEntry[] = [];
  const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'big-event', input: { bytes: 2 * 1000 * 1000 } }, { onEvent: (e) => events.push(e), onLog: (l) => logs.push(l) });
  expectOk(result);
  expect(events.map((e) => (e.event as { blob: string }).blob.length)).toEqual([2 * 1000 * 1000]);
  expect(logs.map((l) => l.message)).toContain('after the big event');
});

describe('a host and a worker with different maxPayloadBytes', () => {
  const MiB3 = 3 * 1024 * 1024;

  it("what a host sends over the lower limit of the worker that took it: an input is VALIDATION_ERROR naming both limits, a platform call's result fails the call", async () => {
    const lowPool = newPool('low-worker');
    const plugins = [fixturePlugins.basic, QUEUE_PLUGIN];
    const worker = await startExecutionWorker({ connection: { servers: server.url }, pool: lowPool, plugins, backend: { type: 'in-process' }, concurrency: 1, maxPayloadBytes: MiB3 });
    const platform = { kv: { get: async () => 'v'.repeat(MB5) } };
    const host = new QueueBackend({ connection: { servers: server.url }, pool: lowPool, plugins, platform, permissions: { platform: { kv: true } } });
    try {
      const limits = /over the limit of worker \S+ \(\S+\) of 3 MiB \(its maxPayloadBytes; this host's is 20 MiB\)/;
      const result = await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'i'.repeat(MB5) }, { timeoutMs: 30_000 });
      expectError(result, 'VALIDATION_ERROR');
      expect(result.error.message).toMatch(/^The input is 4\.8 MiB encoded, /);
      expect(result.error.message).toMatch(limits);
      const called = await host.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'get', args: ['big'] } }, { timeoutMs: 30_000 });
      expectOk(called);
      expect(called.data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR', message: expect.stringMatching(/^The platform call result is 4\.8 MiB encoded, /) });
      expect((called.data as { message: string }).message).toMatch(limits);
      expectOk(await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'small' }));
    } finally {
      await host.shutdown({ timeoutMs: 2000 });
      await worker.close();
    }
  });

  it("a platform call's result whose value is at the worker's lower limit, its encoding just over it, reaches the handler", async () => {
    // The worker takes a body in parts up to its limit plus room for the envelope around the
    // value (the reply's type, id and ok): the host checked the value, not the whole message.
    const MiB1 = 1024 * 1024;
    const edgePool = newPool('edge-worker');
    const plugins = [QUEUE_PLUGIN];
    const worker = await startExecutionWorker({ connection: { servers: server.url }, pool: edgePool, plugins, backend: { type: 'in-process' }, concurrency: 1, maxPayloadBytes: MiB1 });
    const platform = { kv: { get: async () => 'v'.repeat(MiB1) } };
    const host = new QueueBackend({ connection: { servers: server.url }, pool: edgePool, plugins, platform, permissions: { platform: { kv: true } } });
    try {
      const called = await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'kv-get', input: { key: 'edge', lengthOnly: true } }, { timeoutMs: 30_000 });
      expectOk(called);
      expect(called.data).toEqual({ ok: true, length: MiB1 });
    } finally {
      await host.shutdown({ timeoutMs: 2000 });
      await worker.close();
    }
  });

  it("a platform call's result over the host's own limit fails the call naming that limit, found before it is encoded, not sent for the worker to refuse", async () => {
    // Its strings alone are over the limit: refused unencoded (a 200 MB answer encoded held the host's
    // event loop for seconds, and the heartbeats of its executions with it: each was written off by its worker).
    const platform = { kv: { get: async (key: string) => (key === 'wrapped' ? { blob: 'v'.repeat(MB5) } : 'v'.repeat(MB5)) } };
    const host = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic], platform, permissions: { platform: { kv: true } }, maxPayloadBytes: MiB3 });
    try {
      for (const key of ['big', 'wrapped']) {
        const called = await host.execute({ pluginId: BASIC, handlerId: 'platform-call', input: { method: 'get', args: [key] } }, { timeoutMs: 30_000 });
        expectOk(called);
        expect(called.data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR', message: expect.stringMatching(/^The platform call result is at least 4\.8 MiB encoded, over the queue backend's limit of 3 MiB \(maxPayloadBytes: 3145728\)$/) });
      }
    } finally {
      await host.shutdown({ timeoutMs: 2000 });
    }
  });

  it("what a worker sends over the calling host's lower limit: the result and call arguments fail naming both limits, an event becomes a warning", async () => {
    const host = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [QUEUE_PLUGIN], platform: testPlatform(), permissions: { platform: { kv: true } }, maxPayloadBytes: MiB3 });
    try {
      const limits = /over the calling host's limit of 3 MiB \(its maxPayloadBytes; this worker's is 20 MiB\)/;
      const result = await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: { returnBytes: MB5 } }, { timeoutMs: 30_000 });
      expectError(result, 'VALIDATION_ERROR');
      expect(result.error.message).toMatch(/^The handler result is 4\.8 MiB encoded, /);
      expect(result.error.message).toMatch(limits);
      // What was too large, by the name a result's path has, not the words of the message.
      expect(result.error.details).toMatchObject({ path: 'result', reason: 'too-large', limit: MiB3 });
      const called = await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'big-call', input: { bytes: MB5 } }, { timeoutMs: 30_000 });
      expectOk(called);
      expect(called.data).toMatchObject({ ok: false, code: 'VALIDATION_ERROR', message: expect.stringMatching(limits) });
      await expectEventWarnedInItsPlace(host, MB5, /^The ctx\.emit\(\) event is 4\.8 MiB encoded, over the calling host's limit of 3 MiB .*: it was not delivered$/);
    } finally {
      await host.shutdown({ timeoutMs: 2000 });
    }
  });
});

describe('a server whose max_payload is 4 KiB (far below a part of 256 KiB)', () => {
  it('carries inputs, results, log lines and events larger than one message, in parts of what the server takes', async () => {
    const tiny = await startNatsServer({ maxPayload: 4096 });
    const tinyPool = newPool('tiny-payload');
    const worker = await startExecutionWorker({ connection: { servers: tiny.url }, pool: tinyPool, plugins: [fixturePlugins.basic, QUEUE_PLUGIN], backend: { type: 'in-process' }, concurrency: 1 });
    const host = new QueueBackend({ connection: { servers: tiny.url }, pool: tinyPool, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
    try {
      const KB200 = 200 * 1000;
      const input = await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'i'.repeat(KB200) });
      expectOk(input);
      expect(input.data).toEqual({ length: KB200 });
      const output = await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: { returnBytes: 10_000 } });
      expectOk(output);
      expect((output.data as string).length).toBe(10_000);
      const events: ExecutionEvent[] = [];
      const logs: LogEntry[] = [];
      const emitted = await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'big-event', input: { bytes: 10_000 } }, { onEvent: (e) => events.push(e), onLog: (l) => logs.push(l) });
      expectOk(emitted);
      expect(events.map((e) => (e.event as { blob: string }).blob.length)).toEqual([10_000]);
      expect(logs.map((l) => l.message)).toEqual(['after the big event']);
      // Every size around one message's body: a task that fits with its headers (JetStream counts
      // them against the stream's message size), and an input that follows the task in one
      // message, right behind the caller's accept.
      const sizes = Array.from({ length: 20 }, (_, i) => 1600 + i * 25);
      const results = await Promise.all(sizes.map((size) => host.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'x'.repeat(size) }, { timeoutMs: 5000 })));
      expect(results.map((r) => (r.ok ? r.data : `${r.error.code}: ${r.error.message}`))).toEqual(sizes.map((length) => ({ length })));
    } finally {
      await host.shutdown({ timeoutMs: 2000 });
      await worker.close();
      await tiny.stop();
    }
  });
});

describe('a server restarted on its port with a lower max_payload', () => {
  it('what is over the new limit and under the old one goes in parts from then on, both ways', async () => {
    let swapped = await startNatsServer({ maxPayload: '8MB' });
    const swapPool = newPool('payload-swap');
    const plugins = [fixturePlugins.basic, QUEUE_PLUGIN];
    const worker = await startExecutionWorker({ connection: { servers: swapped.url }, pool: swapPool, plugins, backend: { type: 'in-process' }, concurrency: 1 });
    const host = new QueueBackend({ connection: { servers: swapped.url }, pool: swapPool, plugins });
    try {
      expectOk(await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'before' }));
      const { port } = swapped;
      await swapped.stop();
      swapped = await startNatsServer({ port, maxPayload: '1MB' });
      const MB2 = 2 * 1000 * 1000;
      // Sent while the two are reconnecting: each waits for its connection, then goes in parts.
      const input = await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'i'.repeat(MB2) }, { timeoutMs: 30_000 });
      expectOk(input);
      expect(input.data).toEqual({ length: MB2 });
      const output = await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: { returnBytes: MB2 } }, { timeoutMs: 30_000 });
      expectOk(output);
      expect((output.data as string).length).toBe(MB2);
    } finally {
      await host.shutdown({ timeoutMs: 2000 });
      await worker.close();
      await swapped.stop();
    }
  });
});
