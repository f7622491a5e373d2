// A pool's stream or consumer that exists before any host or worker of the pool made it: made by
// hand (`nats stream add`, `nats consumer add`), by another tool, or by another deployment whose
// names map to the same stream.
import { BASIC, expectError, expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import type { ExecutionResult } from '@kb-labs/plugin-execution-core';
import { QueueBackend, startExecutionWorker, type QueueBackendOptions } from '@kb-labs/plugin-execution-queue';
import { AckPolicy, DiscardPolicy, RetentionPolicy, type ConsumerConfig, type StreamConfig } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { newPool, testServer } from './helpers.js';

const nats = testServer();
const backends: QueueBackend[] = [];

function host(options: QueueBackendOptions): QueueBackend {
  const backend = new QueueBackend({ connection: { servers: nats.url }, plugins: [fixturePlugins.basic], ...options });
  backends.push(backend);
  return backend;
}

function worker(options: { pool: string; subjectPrefix?: string; concurrency?: number }) {
  return startExecutionWorker({ connection: { servers: nats.url }, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, ...options });
}

/** The pool's stream as a host makes it, by hand. */
async function addStream(pool: string, extra: Record<string, unknown> = {}): Promise<string> {
  const stream = `KBEXEC_${pool}`;
  await nats.jsm.streams.add({ name: stream, subjects: [`kbexec.${pool}.tasks`], retention: RetentionPolicy.Workqueue, discard: DiscardPolicy.New, max_msgs: 1000, ...extra });
  return stream;
}

/**
 * A pool whose stream its running host made and has read (its next read is its periodic one,
 * 5 s on), then changed by hand with `change`.
 */
async function changedUnderHost(name: string, change: Partial<StreamConfig>): Promise<{ stream: string; backend: QueueBackend }> {
  const pool = newPool(name);
  const stream = `KBEXEC_${pool}`;
  const backend = host({ pool });
  await backend.health();
  const { config } = await nats.jsm.streams.info(stream);
  await nats.jsm.streams.update(stream, { ...config, ...change });
  return { stream, backend };
}

afterEach(async () => {
  await Promise.all(backends.splice(0).map((b) => b.shutdown({ timeoutMs: 2000 })));
});

describe("a pool consumer made by hand with limits the pool's hand-backs and pulls cannot work with", () => {
  const cases: Array<[string, Partial<ConsumerConfig>, string]> = [
    ['max_deliver', { max_deliver: 3 }, 'has max_deliver 3: a task is delivered again each time a worker hands it back'],
    ['max_ack_pending', { max_ack_pending: 1 }, 'has max_ack_pending 1, below the 1000 tasks its stream holds (queueBound)'],
    ['max_expires', { max_expires: nanos(1000) }, "has max_expires 1000 ms: a worker's pull request waits 5000 ms, and the server refuses it"],
    ['headers_only', { headers_only: true }, 'delivers headers only: workers would get tasks without their bodies'],
    ['max_waiting', { max_waiting: 1 }, 'has max_waiting 1: every worker keeps a pull request waiting'],
  ];
  it.each(cases)('%s: the worker fails its start and the host its executions, naming the setting and how to fix it', async (_name, setting, said) => {
    const pool = newPool('consumer-limit');
    const stream = await addStream(pool);
    await nats.jsm.consumers.add(stream, { durable_name: `${pool}-workers`, ack_policy: AckPolicy.Explicit, ...setting });
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
    await nats.jsm.consumers.add(stream, { durable_name: `${pool}-workers`, ack_policy: AckPolicy.Explicit, max_batch: 2 });
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
    await nats.jsm.consumers.add(stream, { durable_name: `${pool}-workers`, ack_policy: AckPolicy.Explicit, ack_wait: nanos(30_000), max_ack_pending: 1000, max_waiting: 512 });
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

describe('a pool stream made by hand with limits that drop or refuse waiting tasks', () => {
  it('max_age and max_msgs_per_subject, which drop waiting tasks, are removed when a host takes the stream over, and the duplicate window is 2 minutes again; its max_bytes is kept', async () => {
    const pool = newPool('stream-age');
    // The server shortens the duplicate window to a max_age under it.
    const stream = await addStream(pool, { max_age: nanos(1000), max_msgs_per_subject: 5, max_bytes: 1_000_000 });
    expect((await nats.jsm.streams.info(stream)).config.duplicate_window).toBe(nanos(1000));
    await host({ pool, queueBound: 10 }).health();
    const { config } = await nats.jsm.streams.info(stream);
    expect(config).toMatchObject({ max_age: 0, max_msgs_per_subject: -1, duplicate_window: nanos(120_000), max_msgs: 10, max_bytes: 1_000_000 });
  });

  it('no_ack (the server would confirm no task: a host could neither know one was in the pool nor hear QUEUE_FULL) is removed when a host takes the stream over, and under a running host at its next read', async () => {
    const pool = newPool('stream-noack');
    const stream = await addStream(pool, { no_ack: true });
    expect((await nats.jsm.streams.info(stream)).config.no_ack).toBe(true);
    const backend = host({ pool, queueBound: 2 });
    await backend.health();
    expect((await nats.jsm.streams.info(stream)).config.no_ack).toBeFalsy();
    // A bound reached is QUEUE_FULL again (before: tasks dropped without a word, callers left to time out).
    const results = await Promise.all([1, 2, 3].map((n) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: n }, { timeoutMs: 3_000 })));
    expect(results.filter((r) => !r.ok && r.error.code === 'QUEUE_FULL')).toHaveLength(1);
    const { stream: again } = await changedUnderHost('stream-noack-later', { no_ack: true });
    await waitFor(async () => !(await nats.jsm.streams.info(again)).config.no_ack, 15_000);
  });

  it('a task dropped by a max_age set under a running host fails saying it expired, and the host removes the max_age', async () => {
    const { stream, backend } = await changedUnderHost('stream-expired', { max_age: nanos(1000), duplicate_window: nanos(1000) });
    // No worker serves the pool: the task waits until the server drops it.
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'expires' }, { timeoutMs: 25_000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.message).toBe(
      'Handler "echo" of plugin "@conformance/basic" did not run: its task expired in the pool\'s stream before any worker took it ' +
        "(the stream's max_age, 1000 ms, set on it by hand: this host has now removed it): it never ran",
    );
    expect((await nats.jsm.streams.info(stream)).config).toMatchObject({ max_age: 0, duplicate_window: nanos(120_000) });
  }, 40_000);

  it("discard: old, set by hand under a running host (a full stream would drop waiting tasks for new ones), is made discard: new again at the host's next read", async () => {
    const { stream, backend } = await changedUnderHost('stream-discard', { discard: DiscardPolicy.Old, max_msgs: 2 });
    expect((await nats.jsm.streams.info(stream)).config.discard).toBe(DiscardPolicy.Old);
    // No worker: the third task makes the full stream drop the first.
    const sent = [0, 1, 2].map((i) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input: i }, { timeoutMs: 12_000 }));
    const dropped = await sent[0]!;
    expectError(dropped, 'WORKER_CRASHED');
    expect(dropped.error.message).toContain("was dropped from the pool's stream, full, for a newer one before any worker took it (the stream's discard: old, set on it by hand: this host has now set discard: new): it never ran");
    // The host reads the stream every 5 s.
    await waitFor(async () => (await nats.jsm.streams.info(stream)).config.discard === DiscardPolicy.New, 15_000);
    await Promise.all(sent);
  }, 40_000);

  it("another subject on the pool's stream (what is published there would be a task), made by hand, is removed when a host takes it over, and under a running host at its next read", async () => {
    const pool = newPool('stream-widened');
    const stream = await addStream(pool, { subjects: [`kbexec.${pool}.tasks`, `other.${pool}.>`] });
    await host({ pool }).health();
    expect((await nats.jsm.streams.info(stream)).config.subjects).toEqual([`kbexec.${pool}.tasks`]);
    const later = newPool('stream-widened-later');
    await host({ pool: later }).health();
    const running = `KBEXEC_${later}`;
    await nats.jsm.streams.update(running, { subjects: [`kbexec.${later}.tasks`, `inject.${later}`] });
    expect((await nats.jsm.streams.info(running)).config.subjects).toHaveLength(2);
    await waitFor(async () => (await nats.jsm.streams.info(running)).config.subjects?.length === 1, 15_000);
  }, 30_000);

  it.each([
    ['sealed', { sealed: true }, 'is sealed: it takes no new task, and a taken one cannot be removed'],
    ['republishing', { republish: { src: '>', dest: 'copies.>' } }, "republishes what it stores to copies.>: every task's input would be copied there"],
    ['sourcing', { sources: [{ name: 'ELSEWHERE' }] }, "takes in the messages of other streams (ELSEWHERE): they would be the pool's tasks"],
  ])('a %s pool stream: executions fail, health() and a worker say so and how to fix it', async (name, settings, said) => {
    const pool = newPool(`stream-${name}`);
    const stream = name === 'sealed' ? await addStream(pool) : await addStream(pool, settings);
    if (name === 'sealed') await nats.jsm.streams.update(stream, settings as never);
    const backend = host({ pool });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.message).toContain(`The stream ${stream} ${said}; delete it while the pool is idle (nats stream rm ${stream})`);
    expect((await backend.health()).problems.join('\n')).toContain(said);
    await expect(worker({ pool })).rejects.toMatchObject({ name: 'QueueServerError', problem: 'misconfigured', message: expect.stringContaining(said) });
  });

  it('a pool stream that denies message deletes (deny_delete, which no update can cancel): executions fail, health() and a worker say so, rather than leaving tasks no worker will run in the stream', async () => {
    const pool = newPool('stream-deny-delete');
    const stream = await addStream(pool, { deny_delete: true });
    const backend = host({ pool });
    // No worker: a host takes a timed-out task off the stream, which this one would refuse.
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' }, { timeoutMs: 2000 });
    expectError(result, 'WORKER_CRASHED');
    const said = 'denies message deletes (deny_delete): the tasks of executions that will never run (timed out, stopped) could not be taken off it';
    expect(result.error.message).toContain(`The stream ${stream} ${said} and would hold places under its bound; delete it while the pool is idle (nats stream rm ${stream})`);
    expect((await backend.health()).problems.join('\n')).toContain(said);
    await expect(worker({ pool })).rejects.toMatchObject({ name: 'QueueServerError', problem: 'misconfigured', message: expect.stringContaining(said) });
    expect((await nats.jsm.streams.info(stream)).state.messages).toBe(0);
  });

  it("a pool stream whose max_consumers other consumers fill: the worker and the host name the stream's limit, not the account's, and executions fail rather than wait for workers that cannot pull", async () => {
    const pool = newPool('stream-max-consumers');
    const stream = await addStream(pool, { max_consumers: 1 });
    await nats.jsm.consumers.add(stream, { durable_name: 'audit', ack_policy: AckPolicy.Explicit });
    const said = `The stream ${stream} allows 1 consumer(s) (its max_consumers, set by hand, which NATS cannot change) and has 1 already, none of them the pool's consumer ${pool}-workers`;
    await expect(worker({ pool })).rejects.toMatchObject({ name: 'QueueServerError', problem: 'misconfigured', message: expect.stringContaining(said) });
    const backend = host({ pool });
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo' }, { timeoutMs: 2000 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.message).toContain(`cannot use pool "${pool}": ${said}, which its workers pull tasks from; delete the stream while the pool is idle (nats stream rm ${stream})`);
    expect((await backend.health()).problems.join('\n')).toContain(said);
  });

  it("a stream's max_bytes reached is QUEUE_FULL naming it, as its bound reached is", async () => {
    const pool = newPool('stream-bytes');
    await addStream(pool, { max_bytes: 2000 });
    const backend = host({ pool, queueBound: 50 });
    // No worker: the tasks stay until the stream's bytes are used up.
    const sent: Array<Promise<ExecutionResult>> = [];
    for (let i = 0; i < 10; i++) sent.push(backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'x'.repeat(400) }, { timeoutMs: 3000 }));
    const results = await Promise.all(sent);
    const full = results.find((r) => !r.ok && r.error.code === 'QUEUE_FULL');
    expect(results.filter((r) => !r.ok && r.error.code === 'WORKER_CRASHED')).toEqual([]);
    expect(full && !full.ok && full.error.message).toBe(
      `The queue of pool "${pool}" is full: the tasks waiting for a worker fill the stream's max_bytes (2000 bytes, set on KBEXEC_${pool} by hand, not by a host); nothing ran`,
    );
    expect(full && !full.ok && full.error.details).toMatchObject({ maxQueue: 50 });
  });
});

describe('two deployments whose subject prefixes name the same stream', () => {
  it.each([
    ['kbexec', '', 'KBEXEC', ''],
    ['kb.exec', '', 'kb_exec', ''],
    // A "_" in the pool name meets one the prefix's "." became.
    ['kb_x', '', 'kb', 'X_'],
  ])('%s, then %s: the second is told the stream is the first one\'s, not to delete it', async (first, firstPool, second, secondPool) => {
    const base = newPool('prefix');
    const [pool1, pool2] = [firstPool + base, secondPool + base];
    const stream = `${first.replaceAll('.', '_').toUpperCase()}_${pool1}`;
    await host({ pool: pool1, subjectPrefix: first }).health();
    const said =
      `The stream ${stream} belongs to subject prefix "${first}" and pool "${pool1}" (its subject ${first}.${pool1}.tasks), not to subject prefix "${second}" and pool "${pool2}": ` +
      'another deployment uses it';
    const result = await host({ pool: pool2, subjectPrefix: second }).execute({ pluginId: BASIC, handlerId: 'echo', input: 1 });
    expectError(result, 'WORKER_CRASHED');
    expect(result.error.message).toContain(said);
    expect(result.error.message).toContain(`Choose a subjectPrefix or pool whose stream name differs from ${stream}`);
    expect(result.error.message).not.toContain('nats stream rm');
    await expect(worker({ pool: pool2, subjectPrefix: second })).rejects.toMatchObject({ problem: 'misconfigured', message: expect.stringContaining(said) });
    // The first deployment's stream is untouched.
    expect((await nats.jsm.streams.info(stream)).config.subjects).toEqual([`${first}.${pool1}.tasks`]);
  });
});
