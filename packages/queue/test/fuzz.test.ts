import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { describeFuzz, FUZZ_A, FUZZ_B, fuzzPluginSource } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { afterAll, afterEach, beforeAll, describe, expect } from 'vitest';
import { DEFAULT_SUBJECT_PREFIX, PoolSubjects } from '../src/shared/subjects.js';
import { leftWorkspaces, natsServer, newPool, startWorkers, type WorkerProcess } from './helpers.js';

// The fuzz driver (packages/conformance/src/fuzz) on the queue: random interleavings of
// executions (crashing ones too), plugin changes on the host, aborts, stats(), health() and
// shutdown(), each crossing NATS to one of two real worker processes on the subprocess backend,
// which have both fuzz plugin ids. FUZZ_RUNS=300 runs many seeds.
const pool = newPool('fuzz');
let server: { url: string; stop(): Promise<void> } | undefined;
let workers: WorkerProcess[] = [];
let connection: NatsConnection | undefined;
let manager: JetStreamManager | undefined;

beforeAll(async () => {
  server = await natsServer();
  workers = await startWorkers(2, { natsUrl: server.url, pool, backend: 'subprocess', concurrency: 4, plugins: [fuzzPluginSource(FUZZ_A), fuzzPluginSource(FUZZ_B)] });
  connection = await connect({ servers: server.url });
  manager = await jetstreamManager(connection);
}, 60_000);

afterAll(async () => {
  await connection?.close();
  await Promise.all(workers.map((w) => w.stop()));
  await server?.stop();
});

// Nothing left on the workers or the server either: each execution's workspace is gone once it
// is over, and no task of a shut-down host waits in the pool's stream (it would hold a place under
// the pool's bound).
afterEach(async () => {
  const stream = new PoolSubjects(DEFAULT_SUBJECT_PREFIX, pool).stream;
  const leftOver = async () => [...(await leftWorkspaces(workers)), ...Array.from({ length: (await manager!.streams.info(stream)).state.messages }, () => 'a task in the stream')];
  const until = Date.now() + 5000;
  let left = await leftOver();
  while (left.length > 0 && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    left = await leftOver();
  }
  expect(left).toEqual([]);
});

describe('fuzz: queue', () => {
  describeFuzz('queue', (options) => new QueueBackend({ connection: { servers: server!.url }, pool, ...options }), { isolatesCrashes: true }, [1, 2, 3, 4, 5, 6]);
});
