// A pool on a JetStream cluster of three nats-servers: the pool's stream lives on one of them
// (or, with streamReplicas, on several), and a server that holds it can go while the others
// stay. What the hosts and workers say then is about the stream, not about a connection that is
// up. Real servers, routed on loopback; one is stopped with SIGKILL, as a machine is lost.
import { BASIC, expectError, expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, QueueServerError, startExecutionWorker, type ExecutionWorker, type QueueBackendOptions } from '@kb-labs/plugin-execution-queue';
import { DiscardPolicy, RetentionPolicy, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startNatsCluster, type NatsCluster, type NatsServer } from '../../../scripts/nats-server.mjs';
import { newPool } from './helpers.js';

let cluster: NatsCluster;
const opened: { shutdown?: () => Promise<unknown>; close?: () => Promise<unknown> }[] = [];

function host(servers: string[], options: QueueBackendOptions): QueueBackend {
  const backend = new QueueBackend({ connection: { servers }, plugins: [fixturePlugins.basic], ...options });
  opened.push({ shutdown: () => backend.shutdown({ timeoutMs: 2000 }) });
  return backend;
}

async function worker(servers: string[], pool: string): Promise<ExecutionWorker> {
  const started = await startExecutionWorker({ connection: { servers }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
  opened.push({ close: () => started.close() });
  return started;
}

/** A client of the cluster's JetStream once it has elected its leaders (its API times out until then). */
async function jetStreamOf(servers: string[]): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  const nc = await connect({ servers });
  let jsm: JetStreamManager | undefined;
  await waitFor(async () => (jsm = await jetstreamManager(nc, { timeout: 2000 }).catch(() => undefined)) !== undefined, 30_000);
  return { nc, jsm: jsm! };
}

/** The server that leads the pool's stream, and the others. */
async function streamLeader(jsm: JetStreamManager, pool: string): Promise<{ leader: NatsServer; others: NatsServer[] }> {
  const info = await jsm.streams.info(`KBEXEC_${pool}`);
  const leader = cluster.servers.find((server) => server.name === info.cluster?.leader);
  if (!leader) throw new Error(`no server of the cluster leads KBEXEC_${pool} (${JSON.stringify(info.cluster)})`);
  return { leader, others: cluster.servers.filter((server) => server !== leader) };
}

const lost = new Set<NatsServer>();

function killServer(server: NatsServer): void {
  process.kill(server.pid, 'SIGKILL');
  lost.add(server);
}

/** The servers a test killed, started again (same port, same store), and the cluster's JetStream ready again. */
async function restartLost(): Promise<void> {
  for (const server of lost) await server.restart();
  lost.clear();
  const { nc } = await jetStreamOf(cluster.urls);
  await nc.close();
}

beforeAll(async () => {
  cluster = await startNatsCluster({ size: 3 });
  const { nc } = await jetStreamOf(cluster.urls);
  await nc.close();
}, 60_000);

afterEach(async () => {
  await Promise.all(opened.splice(0).map((o) => (o.shutdown ?? o.close)!().catch(() => undefined)));
});

afterAll(async () => {
  await cluster?.stop();
});

describe('queue backend on a JetStream cluster', () => {
  it('streamReplicas: the pool\'s stream has that many copies, and executions go on when the server leading it is lost', async () => {
    const pool = newPool('replicas');
    const { nc, jsm } = await jetStreamOf(cluster.urls);
    try {
      const backend = host(cluster.urls, { pool, streamReplicas: 3 });
      expect((await backend.health()).problems.filter((p) => !/no worker/.test(p))).toEqual([]);
      const info = await jsm.streams.info(`KBEXEC_${pool}`);
      expect(info.config.num_replicas).toBe(3);
      const { leader, others } = await streamLeader(jsm, pool);
      const urls = others.map((server) => server.url);
      // The worker and a second host use only the servers that stay; the first host may be on the one lost.
      await worker(urls, pool);
      const second = host(urls, { pool, streamReplicas: 3 });
      expectOk(await second.execute({ pluginId: BASIC, handlerId: 'echo', input: 'before' }, { timeoutMs: 20_000 }));
      killServer(leader);
      // Sent at once: the two left elect a new leader (about 5 s here), within the 20 s a task of a replicated stream may take to be handed over.
      const during = await second.execute({ pluginId: BASIC, handlerId: 'echo', input: 'during' }, { timeoutMs: 60_000 });
      expectOk(during);
      expect(during.data).toBe('during');
      await waitFor(() => jsm.streams.info(`KBEXEC_${pool}`).then((info) => info.cluster?.leader !== undefined && info.cluster.leader !== leader.name, () => false), 60_000);
      const after = await second.execute({ pluginId: BASIC, handlerId: 'echo', input: 'after' }, { timeoutMs: 30_000 });
      expectOk(after);
      expect(after.data).toBe('after');
    } finally {
      await nc.close();
      await restartLost();
    }
  }, 120_000);

  it('a stream made by hand with three copies keeps them under a host that asks for fewer (the default, 1); one asking for more raises them', async () => {
    const { nc, jsm } = await jetStreamOf(cluster.urls);
    try {
      const pool = newPool('by-hand');
      // Three copies need all three servers current: a server restarted by the test before may still be catching up.
      await waitFor(() => jsm.streams.add({ name: `KBEXEC_${pool}`, subjects: [`kbexec.${pool}.tasks`], retention: RetentionPolicy.Workqueue, discard: DiscardPolicy.New, max_msgs: 1000, num_replicas: 3 }).then(() => true, () => false), 30_000);
      await host(cluster.urls, { pool }).health();
      expect((await jsm.streams.info(`KBEXEC_${pool}`)).config.num_replicas).toBe(3);
      const raised = newPool('raised');
      await jsm.streams.add({ name: `KBEXEC_${raised}`, subjects: [`kbexec.${raised}.tasks`], retention: RetentionPolicy.Workqueue, discard: DiscardPolicy.New, max_msgs: 1000 });
      await host(cluster.urls, { pool: raised, streamReplicas: 3 }).health();
      await waitFor(() => jsm.streams.info(`KBEXEC_${raised}`).then((info) => info.config.num_replicas === 3, () => false), 30_000);
    } finally {
      await nc.close();
    }
  }, 60_000);

  it('a stream with one copy, its server lost: health(), a new worker and an execution say the stream does not answer, not that nothing connects', async () => {
    const pool = newPool('one-copy');
    const { nc, jsm } = await jetStreamOf(cluster.urls);
    try {
      const first = host(cluster.urls, { pool });
      await first.health();
      const { leader, others } = await streamLeader(jsm, pool);
      const urls = others.map((server) => server.url);
      const backend = host(urls, { pool });
      await backend.health();
      killServer(leader);

      let problems: string[] = [];
      await waitFor(async () => {
        problems = (await backend.health()).problems;
        return problems.some((p) => /stream does not answer/.test(p));
      }, 30_000);
      expect(problems.join('\n')).toMatch(/is connected to the NATS server \(.+\), but the pool's JetStream stream does not answer .*a JetStream cluster has lost its quorum/);

      const refused = await startExecutionWorker({ connection: { servers: urls }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } }).then(
        (started) => started.close().then(() => undefined),
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(QueueServerError);
      expect((refused as QueueServerError).problem).toBe('unreachable');
      expect((refused as QueueServerError).message).toMatch(/^The worker is connected to the NATS server \(.+\), but the pool's JetStream stream does not answer/);

      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'lost' }, { timeoutMs: 30_000 });
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.details).toMatchObject({ reason: 'runner-lost', phase: 'queued' });
      expect(result.error.message).not.toMatch(/could not connect/);
      expect(result.error.message).toMatch(/stream does not answer/);
    } finally {
      await nc.close();
      await restartLost();
    }
  }, 120_000);
});
