// A message under the id of an execution no worker has started here yet (a result, an event, a
// withdrawal) is from another execution under the same id, one this host lost, or a peer's: it is
// dropped, as a readable one is, whether or not its body can be read (one that could not failed
// the execution waiting in the stream). The worker here is a peer that speaks as a worker does.
import v8 from 'node:v8';
import { BASIC, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { afterEach, expect, it } from 'vitest';
import { asWorker, firstTask, newPool, startedAs, testServer } from './helpers.js';

const nats = testServer();
const closing: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  await Promise.all(closing.splice(0).map((close) => close()));
});

it('an unreadable result, event or withdrawal for an execution no worker has started is dropped: it runs once a worker starts it', async () => {
  const pool = newPool('unreadable-early');
  const stream = `KBEXEC_${pool}`;
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
  const executionId = `unreadable-early-${Math.random().toString(16).slice(2)}`;
  const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 20_000 });
  const { caller: to, taskId } = await firstTask(nats.jsm, stream);
  const garbage = new TextEncoder().encode('not a v8 value');
  for (const kind of ['result', 'event', 'withdrawn']) nats.nc.publish(to, garbage, { headers: asWorker(kind, executionId) });
  // Its start, after those (one connection: they reached the host first), is accepted, and its result ends it.
  const worker = { id: 'peer-worker', host: 'peer-host', pid: 4242 };
  expect(await startedAs(nats.nc, to, worker, taskId, executionId)).toMatchObject({ accept: true });
  nats.nc.publish(to, v8.serialize({ ok: true, data: 'ran', meta: { artifacts: [] } }), { headers: asWorker('result', executionId) });
  expect(await running).toMatchObject({ ok: true, data: 'ran' });
}, 30_000);
