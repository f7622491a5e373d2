// A start the host accepted, withdrawn by its worker (the answer came too late for it), after the
// execution was stopped meanwhile: the cancel went to a worker that never ran it, and the task is
// back in the stream. The worker here is a peer that speaks as a worker does on the caller subject.
import v8 from 'node:v8';
import { BASIC, expectError, expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { afterAll, expect, it } from 'vitest';
import { asWorker, firstTask, newPool, startedAs, testServer } from './helpers.js';

const nats = testServer();
const backends: QueueBackend[] = [];

afterAll(async () => {
  await Promise.all(backends.map((backend) => backend.shutdown({ timeoutMs: 2000 })));
});

it('an execution stopped after it accepted a start that its worker then withdraws ends there: its task off the stream, its id and slot free again', async () => {
  const pool = newPool('withdrawn-stopped');
  const stream = `KBEXEC_${pool}`;
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  backends.push(backend);
  const executionId = `withdrawn-${Math.random().toString(16).slice(2)}`;
  const stop = new AbortController();
  const stopped = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x', executionId }, { timeoutMs: 30_000, signal: stop.signal });
  const { caller, taskId } = await firstTask(nats.jsm, stream);
  const worker = { id: 'peer-worker', host: 'peer-host', pid: 4242 };
  expect(await startedAs(nats.nc, caller, worker, taskId, executionId)).toMatchObject({ accept: true });
  // Stopped now: its cancel goes to the worker, which had given up waiting for that answer and withdraws.
  stop.abort();
  nats.nc.publish(caller, v8.serialize({ worker }), { headers: asWorker('withdrawn', executionId) });
  expectError(await stopped, 'ABORTED');
  // Over on the host: its task is taken off the stream, and its id may be used again.
  await waitFor(async () => (await nats.jsm.streams.info(stream)).state.messages === 0, 10_000);
  const again = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'y', executionId }, { timeoutMs: 300 });
  expectError(again, 'TIMEOUT');
  expect((await backend.stats()).active).toBe(0);
}, 30_000);

it('a start by a second worker, after the first named the execution in a heartbeat (it runs there), is refused for good: not handed back to retry while it runs', async () => {
  const pool = newPool('confirmed-start');
  const stream = `KBEXEC_${pool}`;
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  backends.push(backend);
  const executionId = `confirmed-${Math.random().toString(16).slice(2)}`;
  const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x', executionId }, { timeoutMs: 30_000 });
  const { caller, taskId } = await firstTask(nats.jsm, stream);
  const first = { id: 'peer-worker-1', host: 'peer-host', pid: 4242 };
  expect(await startedAs(nats.nc, caller, first, taskId, executionId)).toMatchObject({ accept: true });
  // The first worker names it in a heartbeat: it took the start and runs it (no withdrawal is coming).
  const beat = await nats.nc.request(caller, v8.serialize({ worker: first.id, executions: [executionId] }), { headers: asWorker('heartbeat', ''), timeout: 5000 });
  expect(v8.deserialize(beat.data)).toEqual({ unknown: [] });
  // Another delivery of its task (the first worker's ack lost) reaches a second worker.
  const second = { id: 'peer-worker-2', host: 'peer-host', pid: 4343 };
  const refused = await nats.nc.request(caller, v8.serialize({ worker: second, task: taskId }), { headers: asWorker('started', executionId), timeout: 5000 });
  const answer = v8.deserialize(refused.data) as { accept: boolean; retry?: boolean };
  expect(answer).toMatchObject({ accept: false });
  expect(answer.retry).not.toBe(true);
  // The first worker's result ends it.
  nats.nc.publish(caller, v8.serialize({ ok: true, data: 'x', meta: { artifacts: [] } }), { headers: asWorker('result', executionId) });
  expectOk(await running);
}, 30_000);

it("a start withdrawn after shutdown's first second is not accepted again from another worker: the execution fails SHUTTING_DOWN (queued) and its task leaves the stream", async () => {
  const pool = newPool('withdrawn-shutdown');
  const stream = `KBEXEC_${pool}`;
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  backends.push(backend);
  const executionId = `withdrawn-late-${Math.random().toString(16).slice(2)}`;
  const taken = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x', executionId }, { timeoutMs: 30_000 });
  await waitFor(async () => (await nats.jsm.streams.info(stream).catch(() => undefined))?.state.messages === 1, 10_000);
  // One nobody takes: its SHUTTING_DOWN says shutdown's first second is over.
  const waiting = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'y' }, { timeoutMs: 30_000 });
  const task = (await nats.jsm.streams.getMessage(stream, { seq: 1 }))!;
  const caller = task.header.get('Kb-Reply');
  const taskId = task.header.get('Nats-Msg-Id');
  const first = { id: 'peer-worker-1', host: 'peer-host', pid: 4242 };
  expect(await startedAs(nats.nc, caller, first, taskId, executionId)).toMatchObject({ accept: true });
  const shutdown = backend.shutdown({ timeoutMs: 20_000 });
  expectError(await waiting, 'SHUTTING_DOWN');
  // The first worker withdraws its start now (the answer came too late for it): the task is back in the stream.
  nats.nc.publish(caller, v8.serialize({ worker: first }), { headers: asWorker('withdrawn', executionId) });
  const second = { id: 'peer-worker-2', host: 'peer-host', pid: 4343 };
  expect(await startedAs(nats.nc, caller, second, taskId, executionId)).toMatchObject({ accept: false });
  const result = await taken;
  expectError(result, 'SHUTTING_DOWN');
  expect(result.error.details).toMatchObject({ phase: 'queued' });
  await shutdown;
  expect((await nats.jsm.streams.info(stream)).state.messages).toBe(0);
}, 30_000);

it('a withdrawal of a start its worker has named in a heartbeat (it runs there) is ignored: a later start by another worker is still refused, and the first worker still owns it', async () => {
  const pool = newPool('confirmed-withdrawn');
  const stream = `KBEXEC_${pool}`;
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  backends.push(backend);
  const executionId = `confirmed-withdrawn-${Math.random().toString(16).slice(2)}`;
  const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x', executionId }, { timeoutMs: 30_000 });
  const { caller, taskId } = await firstTask(nats.jsm, stream);
  const first = { id: 'peer-worker-1', host: 'peer-host', pid: 4242 };
  expect(await startedAs(nats.nc, caller, first, taskId, executionId)).toMatchObject({ accept: true });
  const beat = await nats.nc.request(caller, v8.serialize({ worker: first.id, executions: [executionId] }), { headers: asWorker('heartbeat', ''), timeout: 5000 });
  expect(v8.deserialize(beat.data)).toEqual({ unknown: [] });
  // A withdrawal under the first worker's id after that (a forgery, or another worker given the same id whose start went unanswered).
  nats.nc.publish(caller, v8.serialize({ worker: first }), { headers: asWorker('withdrawn', executionId) });
  const second = { id: 'peer-worker-2', host: 'peer-host', pid: 4343 };
  expect(await startedAs(nats.nc, caller, second, taskId, executionId)).toMatchObject({ accept: false });
  // The first worker still runs it: its heartbeat is answered with it known, and its result ends it.
  const again = await nats.nc.request(caller, v8.serialize({ worker: first.id, executions: [executionId] }), { headers: asWorker('heartbeat', ''), timeout: 5000 });
  expect(v8.deserialize(again.data)).toEqual({ unknown: [] });
  nats.nc.publish(caller, v8.serialize({ ok: true, data: 'x', meta: { artifacts: [] } }), { headers: asWorker('result', executionId) });
  expectOk(await running);
}, 30_000);
