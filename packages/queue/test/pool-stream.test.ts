import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { ensureConsumer } from '../src/shared/pool-consumer.js';
import { ensureStream } from '../src/shared/pool-stream.js';
import { PoolSubjects } from '../src/shared/subjects.js';
import { natsServer, newPool } from './helpers.js';

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
