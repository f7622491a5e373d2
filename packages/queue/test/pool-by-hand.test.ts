// A pool's stream or consumer that exists before any host or worker of the pool made it: made by
// hand (`nats stream add`, `nats consumer add`), by another tool, or by another deployment whose
// names map to the same stream.
import { BASIC, expectError, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import { QueueBackend, startExecutionWorker, type QueueBackendOptions } from '@kb-labs/plugin-execution-queue';
import { AckPolicy, DiscardPolicy, RetentionPolicy, jetstreamManager, type ConsumerConfig, type JetStreamManager } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { natsServer, newPool } from './helpers.js';

let server: Awaited<ReturnType<typeof natsServer>>;
let nc: NatsConnection;
let jsm: JetStreamManager;
const backends: QueueBackend[] = [];

function host(options: QueueBackendOptions): QueueBackend {
  const backend = new QueueBackend({ connection: { servers: server.url }, plugins: [fixturePlugins.basic], ...options });
  backends.push(backend);
  return backend;
}

function worker(options: { pool: string; subjectPrefix?: string; concurrency?: number }) {
  return startExecutionWorker({ connection: { servers: server.url }, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, ...options });
}

/** The pool's stream as a host makes it, by hand. */
async function addStream(pool: string, extra: Record<string, unknown> = {}): Promise<string> {
  const stream = `KBEXEC_${pool}`;
  await jsm.streams.add({ name: stream, subjects: [`kbexec.${pool}.tasks`], retention: RetentionPolicy.Workqueue, discard: DiscardPolicy.New, max_msgs: 1000, ...extra });
  return stream;
}

beforeAll(async () => {
  server = await natsServer();
  nc = await connect({ servers: server.url });
  jsm = await jetstreamManager(nc);
});

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe('two deployments whose subject prefixes name the same stream', () => {
  it.each([
    ['kbexec', 'KBEXEC'],
    ['kb.exec', 'kb_exec'],
  ])('%s, then %s: the second is told the stream is the first one\'s, not to delete it', async (first, second) => {
    const pool = newPool('prefix');
    const stream = `${first.replaceAll('.', '_').toUpperCase()}_${pool}`;
    await host({ pool, subjectPrefix: first }).health();
    const said =
      `The stream ${stream} belongs to subject prefix "${first}" and pool "${pool}" (its subject ${first}.${pool}.tasks), not to subject prefix "${second}" and pool "${pool}": ` +
      'another deployment uses it';
    const result = await host({ pool, subjectPrefix: second }).execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.message).toContain(said);
    expect(result.error.message).toContain('Choose a subjectPrefix (or pool) that differs from theirs in more than case or "." for "_"');
    expect(result.error.message).not.toContain('nats stream rm');
    await expect(worker({ pool, subjectPrefix: second })).rejects.toMatchObject({ problem: 'misconfigured', message: expect.stringContaining(said) });
    // The first deployment's stream is untouched.
    expect((await jsm.streams.info(stream)).config.subjects).toEqual([`${first}.${pool}.tasks`]);
  });
});
