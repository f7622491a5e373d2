import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { DiscardPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import { ensureConsumer } from '../src/shared/pool-consumer.js';
import { ensureStream } from '../src/shared/pool-stream.js';
import { PoolSubjects } from '../src/shared/subjects.js';
import { natsServer, newPool, testServer } from './helpers.js';

// Workers and hosts of a new pool start together (a deploy, a test starting two workers): each
// finds the stream missing and makes it, and all but one of them lose that race on the server.
describe('a new pool started by several at once', () => {
  let server: Awaited<ReturnType<typeof natsServer>>;
  let connections: NatsConnection[] = [];
  let managers: JetStreamManager[] = [];
  beforeAll(async () => {
    server = await natsServer();
    connections = await Promise.all([0, 1, 2].map(() => connect({ servers: server.url })));
    managers = await Promise.all(connections.map((nc) => jetstreamManager(nc)));
  });
  afterAll(async () => {
    await Promise.all(connections.map((nc) => nc.close()));
    await server?.stop();
  });

  it('every one of them gets the stream and the consumer, and the host\'s bound is the one in effect', async () => {
    for (let round = 0; round < 6; round++) {
      const subjects = new PoolSubjects('kbexec', newPool('race'));
      const host = { maxMessages: 77, maxMessageBytes: 1024 * 1024, storage: 'memory' as const };
      const worker = { maxMessages: 1000, maxMessageBytes: 1024 * 1024, storage: 'memory' as const };
      const [w1, w2, h] = await Promise.all([
        ensureStream(managers[0]!, subjects, worker, 'worker').then((stream) => ensureConsumer(managers[0]!, subjects, { maxMessages: stream.maxMessages, largestPull: 4 })),
        ensureStream(managers[1]!, subjects, worker, 'worker').then((stream) => ensureConsumer(managers[1]!, subjects, { maxMessages: stream.maxMessages, largestPull: 4 })),
        ensureStream(managers[2]!, subjects, host, 'host'),
      ]);
      expect(w1).toBeUndefined();
      expect(w2).toBeUndefined();
      expect(h.maxMessages).toBe(77);
      expect((await managers[0]!.streams.info(subjects.stream)).config.max_msgs).toBe(77);
      expect((await managers[0]!.consumers.info(subjects.stream, subjects.consumer)).config.durable_name).toBe(subjects.consumer);
      await managers[0]!.streams.delete(subjects.stream);
    }
  });
});

// Who sets the pool's bound (docs/backends/queue.md, "The stream"): a host starting sets its
// queueBound, a host's periodic look (host-check) only takes over a stream a worker made, a worker
// never changes the stream, and no host lowers the bound while tasks wait in it.
describe("the pool's stream made by another first", () => {
  const nats = testServer();
  const settings = (maxMessages: number) => ({ maxMessages, maxMessageBytes: 1024 * 1024, storage: 'memory' as const });
  const bound = async (subjects: PoolSubjects) => (await nats.jsm.streams.info(subjects.stream)).config.max_msgs;

  it("a worker's is taken over by a host's periodic look, another host's is not; a host starting sets its own; a worker changes neither", async () => {
    const subjects = new PoolSubjects('kbexec', newPool('take-over'));
    try {
      await ensureStream(nats.jsm, subjects, settings(1000), 'worker');
      expect((await ensureStream(nats.jsm, subjects, settings(50), 'worker')).maxMessages).toBe(1000);
      expect(await bound(subjects)).toBe(1000);
      expect((await ensureStream(nats.jsm, subjects, settings(50), 'host-check')).maxMessages).toBe(50);
      expect(await bound(subjects)).toBe(50);
      // Now a host's: another host's look leaves its bound, a worker too; a host that starts sets its own.
      expect((await ensureStream(nats.jsm, subjects, settings(80), 'host-check')).maxMessages).toBe(50);
      expect((await ensureStream(nats.jsm, subjects, settings(1000), 'worker')).maxMessages).toBe(50);
      expect(await bound(subjects)).toBe(50);
      expect((await ensureStream(nats.jsm, subjects, settings(80), 'host')).maxMessages).toBe(80);
      expect(await bound(subjects)).toBe(80);
    } finally {
      await nats.jsm.streams.delete(subjects.stream);
    }
  });

  it('with tasks waiting, a host does not lower the bound (nor set one on a stream made without), and says so; it raises it, and the same bound is no news', async () => {
    const subjects = new PoolSubjects('kbexec', newPool('bound-held'));
    const js = jetstream(nats.nc);
    try {
      await ensureStream(nats.jsm, subjects, settings(80), 'host');
      for (let i = 0; i < 3; i++) await js.publish(subjects.tasks, new Uint8Array([i]));
      const lower = await ensureStream(nats.jsm, subjects, settings(2), 'host');
      expect([lower.maxMessages, lower.boundHeld]).toEqual([80, { wanted: 2, waiting: 3 }]);
      expect(await bound(subjects)).toBe(80);
      const same = await ensureStream(nats.jsm, subjects, settings(80), 'host');
      expect([same.maxMessages, same.boundHeld]).toEqual([80, undefined]);
      const higher = await ensureStream(nats.jsm, subjects, settings(100), 'host');
      expect([higher.maxMessages, higher.boundHeld]).toEqual([100, undefined]);
      expect(await bound(subjects)).toBe(100);
      // Made by hand without a bound (max_msgs -1), tasks waiting: it stays without one.
      await nats.jsm.streams.delete(subjects.stream);
      await nats.jsm.streams.add({ name: subjects.stream, subjects: [subjects.tasks], retention: RetentionPolicy.Workqueue, discard: DiscardPolicy.New, storage: StorageType.Memory, max_msgs: -1 });
      await js.publish(subjects.tasks, new Uint8Array([9]));
      const unbounded = await ensureStream(nats.jsm, subjects, settings(50), 'host');
      expect([unbounded.maxMessages, unbounded.boundHeld]).toEqual([-1, { wanted: 50, waiting: 1 }]);
      expect(await bound(subjects)).toBe(-1);
    } finally {
      await nats.jsm.streams.delete(subjects.stream);
    }
  });
});
