// The pool's consumer exists, but a host's read of it fails for another reason than its absence
// (here its user may not read consumers; a read that times out is the same): the stream's
// max_consumers, filled by that very consumer, is not a stream with no room for it.
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { DiscardPolicy, RetentionPolicy, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { newPool } from './helpers.js';

const USERS = '{ users = [ { user: host, password: host-secret, permissions: { publish: { deny: ["$JS.API.CONSUMER.INFO.>"] } } }, { user: admin, password: admin-secret } ] }';
const as = (url: string, user: string) => ({ servers: url, user, pass: `${user}-secret` });

describe("a pool stream whose max_consumers the pool's own consumer fills", () => {
  it("a host whose read of that consumer fails (not for its absence) is not told the stream has no room for it: executions run", async () => {
    const server = await startNatsServer({ authorization: USERS });
    const pool = newPool('own-consumer-fills');
    const stream = `KBEXEC_${pool}`;
    const nc = await connect(as(server.url, 'admin'));
    let worker: Awaited<ReturnType<typeof startExecutionWorker>> | undefined;
    let backend: QueueBackend | undefined;
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: stream, subjects: [`kbexec.${pool}.tasks`], retention: RetentionPolicy.Workqueue, discard: DiscardPolicy.New, max_msgs: 1000, max_consumers: 1 });
      // The worker makes the pool's consumer: the stream's one.
      worker = await startExecutionWorker({ connection: as(server.url, 'admin'), pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
      expect((await jsm.streams.info(stream)).state.consumer_count).toBe(1);
      backend = new QueueBackend({ connection: as(server.url, 'host'), pool, plugins: [fixturePlugins.basic] });
      // Before: WORKER_CRASHED "cannot use pool …: The stream … allows 1 consumer(s) … and has 1 already, none of them the pool's consumer", which is its own.
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'ran' }, { timeoutMs: 10_000 });
      expectOk(result);
      expect(result.data).toBe('ran');
      expect((await backend.health()).problems.join('\n')).not.toContain('none of them the pool');
    } finally {
      await backend?.shutdown({ timeoutMs: 2000 });
      await worker?.close();
      await nc.close();
      await server.stop();
    }
  }, 60_000);
});
