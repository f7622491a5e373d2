// A large input goes to its worker in parts once the start is accepted: an execution stopped
// meanwhile (an abort, its time limit) needs it no more. The worker here is a peer that speaks as
// a worker does on the caller subject, and takes the parts on its own subject.
import v8 from 'node:v8';
import { BASIC, expectError, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import type { Msg } from '@nats-io/transport-node';
import { afterAll, expect, it } from 'vitest';
import { asWorker, firstTask, newPool, startedAs, testServer } from './helpers.js';

const nats = testServer();
const backends: QueueBackend[] = [];

afterAll(async () => {
  await Promise.all(backends.map((backend) => backend.shutdown({ timeoutMs: 2000 })));
});

it("a stopped execution's large input stops going to its worker once the cancel went: no further part is sent", async () => {
  const pool = newPool('stopped-input');
  const stream = `KBEXEC_${pool}`;
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  backends.push(backend);
  const worker = { id: 'peer-worker', host: 'peer-host', pid: 4242 };
  const parts: Msg[] = [];
  let partsAfterCancel = 0;
  let cancelled = false;
  const sub = nats.nc.subscribe(`kbexec.${pool}.worker.${worker.id}`, {
    callback: (_error, msg) => {
      const kind = msg.headers?.get('Kb-Kind');
      if (kind === 'cancel') cancelled = true;
      if (kind !== 'input') return;
      parts.push(msg);
      if (cancelled) partsAfterCancel++;
    },
  });
  try {
    const executionId = `stopped-input-${Math.random().toString(16).slice(2)}`;
    const stop = new AbortController();
    // 2 MB: eight parts of 256 KiB, one at a time until the first is answered.
    const result = backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x'.repeat(2 * 1024 * 1024), executionId }, { timeoutMs: 30_000, signal: stop.signal });
    const { caller, taskId } = await firstTask(nats.jsm, stream);
    expect(await startedAs(nats.nc, caller, worker, taskId, executionId)).toMatchObject({ accept: true });
    await waitFor(() => parts.length === 1, 10_000);
    stop.abort();
    await waitFor(() => cancelled, 10_000);
    // The first part is taken now; two heartbeats' answers come after anything the host sent on taking that answer.
    parts[0]!.respond();
    for (let beat = 0; beat < 2; beat++) {
      await nats.nc.request(caller, v8.serialize({ worker: worker.id, executions: [executionId] }), { headers: asWorker('heartbeat', ''), timeout: 5000 });
    }
    expect(partsAfterCancel).toBe(0);
    nats.nc.publish(caller, v8.serialize({ ok: true, data: null, meta: { artifacts: [] } }), { headers: asWorker('result', executionId) });
    expectError(await result, 'ABORTED');
  } finally {
    sub.unsubscribe();
  }
}, 30_000);
