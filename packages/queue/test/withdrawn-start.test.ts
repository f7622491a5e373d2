// A start the host accepted, withdrawn by its worker (the answer came too late for it), after the
// execution was stopped meanwhile: the cancel went to a worker that never ran it, and the task is
// back in the stream. The worker here is a peer that speaks as a worker does on the caller subject.
import v8 from 'node:v8';
import { BASIC, expectError, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { headers } from '@nats-io/transport-node';
import { afterAll, expect, it } from 'vitest';
import { newPool, testServer } from './helpers.js';

const nats = testServer();
const backends: QueueBackend[] = [];

afterAll(async () => {
  await Promise.all(backends.map((backend) => backend.shutdown({ timeoutMs: 2000 })));
});

/** What a worker sends its caller: `kind` about execution `id`, its body v8-serialised. */
function asWorker(kind: string, id: string): ReturnType<typeof headers> {
  const h = headers();
  h.set('Kb-Kind', kind);
  h.set('Kb-Exec-Id', id);
  return h;
}

it('an execution stopped after it accepted a start that its worker then withdraws ends there: its task off the stream, its id and slot free again', async () => {
  const pool = newPool('withdrawn-stopped');
  const stream = `KBEXEC_${pool}`;
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  backends.push(backend);
  const executionId = `withdrawn-${Math.random().toString(16).slice(2)}`;
  const stop = new AbortController();
  const stopped = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x', executionId }, { timeoutMs: 30_000, signal: stop.signal });
  await waitFor(async () => (await nats.jsm.streams.info(stream).catch(() => undefined))?.state.messages === 1, 10_000);
  const task = (await nats.jsm.streams.getMessage(stream, { seq: 1 }))!;
  const caller = task.header.get('Kb-Reply');
  const worker = { id: 'peer-worker', host: 'peer-host', pid: 4242 };
  const answer = await nats.nc.request(caller, v8.serialize({ worker, task: task.header.get('Nats-Msg-Id') }), { headers: asWorker('started', executionId), timeout: 5000 });
  expect(v8.deserialize(answer.data)).toMatchObject({ accept: true });
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
