// An input that does not reach the worker that took it (refused by its lower maxPayloadBytes, or
// lost on the way): the host fails the execution, and the worker, told so, frees its slot at once
// rather than at the answer to its next heartbeat (here a minute away).
import v8 from 'node:v8';
import { BASIC, expectError, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DEFAULT_SUBJECT_PREFIX, PoolSubjects } from '../src/shared/subjects.js';
import { asWorker, firstTask, natsServer, newPool, QUEUE_PLUGIN, QUEUE_PROBE, startedAs } from './helpers.js';

let server: Awaited<ReturnType<typeof natsServer>>;
let nc: NatsConnection;

beforeAll(async () => {
  server = await natsServer();
  nc = await connect({ servers: server.url });
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

it("an input its worker refuses fails the execution and stops it on that worker: the worker's slot is free again before its next heartbeat", async () => {
  const pool = newPool('refused-input');
  const plugins = [QUEUE_PLUGIN];
  const worker = await startExecutionWorker({ connection: { servers: server.url }, pool, plugins, backend: { type: 'in-process' }, concurrency: 1, maxPayloadBytes: 1024 * 1024, heartbeatMs: 60_000 });
  const host = new QueueBackend({ connection: { servers: server.url }, pool, plugins, workerLostMs: 600_000 });
  try {
    const result = await host.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input: 'i'.repeat(2_000_000) }, { timeoutMs: 30_000 });
    expectError(result, 'VALIDATION_ERROR');
    expect(result.error.message).toMatch(/^The input is .* over the limit of worker /);
    await waitFor(() => worker.running === 0, 5000);
  } finally {
    await host.shutdown({ timeoutMs: 2000 });
    await worker.close();
  }
}, 20_000);

it('an input that could not be sent, its worker naming the execution in heartbeats without asking for it again, fails the execution and stops it on that worker', async () => {
  const pool = newPool('lost-input');
  const stream = `KBEXEC_${pool}`;
  const jsm = await jetstreamManager(nc);
  const host = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic] });
  try {
    const executionId = `lost-input-${Math.random().toString(16).slice(2)}`;
    // Larger than a task message carries: it follows, once started, to the worker's subject.
    const result = host.execute({ pluginId: BASIC, handlerId: 'echo', input: 'i'.repeat(1_000_000), executionId }, { timeoutMs: 30_000 });
    const { caller, taskId } = await firstTask(jsm, stream);
    // A worker (a peer speaking as one) not yet listening on its subject: the input's transfer finds nobody there.
    const worker = { id: 'peer-worker', host: 'peer-host', pid: 4242 };
    expect(await startedAs(nc, caller, worker, taskId, executionId)).toMatchObject({ accept: true });
    // Its heartbeats name the execution, and it never asks for the input again.
    const beat = () => nc.request(caller, v8.serialize({ worker: worker.id, executions: [executionId] }), { headers: asWorker('heartbeat', ''), timeout: 5000 });
    // The answer to one comes after the server had the input's parts (the host sent them first): it listens from then on.
    await beat();
    let cancelled = false;
    nc.subscribe(new PoolSubjects(DEFAULT_SUBJECT_PREFIX, pool).worker(worker.id), { callback: (_error, msg) => void (msg.headers?.get('Kb-Kind') === 'cancel' ? (cancelled = true) : msg.respond()) });
    await nc.flush();
    for (let more = 0; more < 3; more++) await beat();
    const failed = await result;
    expectError(failed, 'WORKER_CRASHED');
    expect(failed.error.message).toMatch(/could not be sent the input/);
    // Told to stop it: its slot is free now, not at the answer to its next heartbeat.
    await waitFor(() => cancelled, 5000);
  } finally {
    await host.shutdown({ timeoutMs: 2000 });
  }
}, 20_000);
