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

describe("a pool consumer made by hand with limits the pool's hand-backs and pulls cannot work with", () => {
  const cases: Array<[string, Partial<ConsumerConfig>, string]> = [
    ['max_deliver', { max_deliver: 3 }, 'has max_deliver 3: a task is delivered again each time a worker hands it back'],
    ['max_ack_pending', { max_ack_pending: 1 }, 'has max_ack_pending 1, below the 1000 tasks its stream holds (queueBound)'],
    ['max_expires', { max_expires: nanos(1000) }, "has max_expires 1000 ms: a worker's pull request waits 5000 ms, and the server refuses it"],
    ['headers_only', { headers_only: true }, 'delivers headers only: workers would get tasks without their bodies'],
  ];
  it.each(cases)('%s: the worker fails its start and the host its executions, naming the setting and how to fix it', async (_name, setting, said) => {
    const pool = newPool('consumer-limit');
    const stream = await addStream(pool);
    await jsm.consumers.add(stream, { durable_name: `${pool}-workers`, ack_policy: AckPolicy.Explicit, ...setting });
    const fix = `; delete it (nats consumer rm ${stream} ${pool}-workers) and the next worker makes it as the pool needs`;
    await expect(worker({ pool, concurrency: 2 })).rejects.toMatchObject({ name: 'QueueServerError', problem: 'misconfigured', message: expect.stringContaining(said) });
    const backend = host({ pool });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 10_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.message).toContain(`cannot use pool "${pool}": The consumer ${pool}-workers of stream ${stream} ${said}`);
    expect(result.error.message).toContain(fix);
    const health = await backend.health();
    expect(health.ok).toBe(false);
    expect(health.problems.join('\n')).toContain(said);
  });

  it('max_batch below a worker\'s concurrency: that worker fails its start, naming it; one whose concurrency is within it serves', async () => {
    const pool = newPool('consumer-batch');
    const stream = await addStream(pool);
    await jsm.consumers.add(stream, { durable_name: `${pool}-workers`, ack_policy: AckPolicy.Explicit, max_batch: 2 });
    await expect(worker({ pool, concurrency: 3 })).rejects.toMatchObject({
      problem: 'misconfigured',
      message: expect.stringContaining(`The consumer ${pool}-workers of stream ${stream} has max_batch 2: a worker asks for as many tasks as it has free slots (up to its concurrency, 3 here)`),
    });
    const within = await worker({ pool, concurrency: 2 });
    try {
      expectOk(await host({ pool }).execute({ pluginId: BASIC, handlerId: 'echo', input: 'within' }));
    } finally {
      await within.close();
    }
  });

  it('one made with the nats CLI\'s defaults (pull, explicit acks, ack_wait 30 s, max_ack_pending 1000, max_waiting 512) serves the pool', async () => {
    const pool = newPool('consumer-defaults');
    const stream = await addStream(pool);
    await jsm.consumers.add(stream, { durable_name: `${pool}-workers`, ack_policy: AckPolicy.Explicit, ack_wait: nanos(30_000), max_ack_pending: 1000, max_waiting: 512 });
    const running = await worker({ pool });
    try {
      const backend = host({ pool });
      expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'by hand' }));
      expect((await backend.health()).problems).toEqual([]);
    } finally {
      await running.close();
    }
  });
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
