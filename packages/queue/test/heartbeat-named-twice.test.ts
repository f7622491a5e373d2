// A heartbeat that names one execution many times (a peer with a worker's id, or a worker of
// another version) is taken as naming it once: a stopped execution's cancel goes to its worker
// once per heartbeat, not once per listing (30,000 listings, one message of some 750 KB, made the
// host send 30,000 cancels and held its event loop for a second and a half).
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

it("a heartbeat naming a stopped execution 1,000 times sends its cancel once, as one naming it once does", async () => {
  const pool = newPool('named-twice');
  const stream = `KBEXEC_${pool}`;
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
  const executionId = `named-twice-${Math.random().toString(16).slice(2)}`;
  const stop = new AbortController();
  const running = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1, executionId }, { timeoutMs: 20_000, signal: stop.signal });
  const { caller: to, taskId } = await firstTask(nats.jsm, stream);
  const worker = { id: 'peer-worker', host: 'peer-host', pid: 4242 };
  expect(await startedAs(nats.nc, to, worker, taskId, executionId)).toMatchObject({ accept: true });
  let cancels = 0;
  const onWorker = nats.nc.subscribe(`kbexec.${pool}.>`, { callback: (_error, msg) => void (msg.headers?.get('Kb-Kind') === 'cancel' && msg.headers.get('Kb-Exec-Id') === executionId && cancels++) });
  closing.push(async () => onWorker.unsubscribe());
  await nats.nc.flush();
  stop.abort();
  await expect.poll(() => cancels, { timeout: 5000 }).toBe(1);
  // The host sends the cancels as it reads the heartbeat, before its answer: on this one connection they come first.
  const beat = await nats.nc.request(to, v8.serialize({ worker: worker.id, executions: Array(1000).fill(executionId) }), { headers: asWorker('heartbeat', ''), timeout: 5000 });
  expect(v8.deserialize(beat.data)).toEqual({ unknown: [] });
  expect(cancels).toBe(2);
  nats.nc.publish(to, v8.serialize({ ok: true, data: 'x', meta: { artifacts: [] } }), { headers: asWorker('result', executionId) });
  expect(await running).toMatchObject({ ok: false, error: { code: 'ABORTED' } });
}, 30_000);
