// The pool's stream deleted and made again under running hosts (`nats stream rm`, a cluster's
// memory stream lost with its server): its sequence numbers count from 1 again, so a number a host
// holds for a task of the old stream may name another host's task in the new one.
import { BASIC, expectError, expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { afterAll, expect, it } from 'vitest';
import { newPool, testServer } from './helpers.js';

const nats = testServer();
const backends: QueueBackend[] = [];

afterAll(async () => {
  await Promise.all(backends.map((backend) => backend.shutdown({ timeoutMs: 2000 })));
});

function host(pool: string): QueueBackend {
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  backends.push(backend);
  return backend;
}

it("a host that stops a task of a stream since made anew does not take another host's task of the new stream off it", async () => {
  const pool = newPool('made-anew');
  const stream = `KBEXEC_${pool}`;
  const depth = async () => (await nats.jsm.streams.info(stream).catch(() => undefined))?.state.messages;
  const first = host(pool);
  const second = host(pool);
  // No worker yet: the first host's task waits in the stream, as its sequence 1.
  const stop = new AbortController();
  const stopped = first.execute({ pluginId: BASIC, handlerId: 'echo', input: 'first' }, { timeoutMs: 60_000, signal: stop.signal });
  await waitFor(async () => (await depth()) === 1, 10_000);
  await nats.jsm.streams.delete(stream);
  // The second host makes the stream again as it connects; its task is sequence 1 of the new stream.
  const waiting = second.execute({ pluginId: BASIC, handlerId: 'echo', input: 'second' }, { timeoutMs: 60_000 });
  await waitFor(async () => (await depth()) === 1, 10_000);
  stop.abort();
  expectError(await stopped, 'ABORTED');
  // The second host's task is still there for a worker to take, and runs.
  const worker = await startExecutionWorker({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 1 });
  try {
    const result = await waiting;
    expectOk(result);
    expect(result.data).toBe('second');
  } finally {
    await worker.close();
  }
}, 60_000);

it('a task of a stream since made anew fails at the next read of the stream, though another host\'s task holds its sequence there, not as a TIMEOUT blaming the workers', async () => {
  const pool = newPool('made-anew-read');
  const stream = `KBEXEC_${pool}`;
  const depth = async () => (await nats.jsm.streams.info(stream).catch(() => undefined))?.state.messages;
  const first = host(pool);
  const second = host(pool);
  const gone = first.execute({ pluginId: BASIC, handlerId: 'echo', input: 'first' }, { timeoutMs: 30_000 });
  await waitFor(async () => (await depth()) === 1, 10_000);
  await nats.jsm.streams.delete(stream);
  const waiting = second.execute({ pluginId: BASIC, handlerId: 'echo', input: 'second' }, { timeoutMs: 60_000 });
  await waitFor(async () => (await depth()) === 1, 10_000);
  // The first host reads the stream every 5 s: its task is not there, whatever holds its sequence now.
  const result = await gone;
  expectError(result, 'WORKER_CRASHED');
  expect(result.error.message).toMatch(/did not run: its task was removed from the pool's stream before any worker took it/);
  const worker = await startExecutionWorker({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 1 });
  try {
    const ran = await waiting;
    expectOk(ran);
    expect(ran.data).toBe('second');
  } finally {
    await worker.close();
  }
}, 60_000);
