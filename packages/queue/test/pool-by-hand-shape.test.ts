// A pool's stream or consumer made by hand in a shape the pool cannot use (see pool-by-hand.test.ts
// for its limits): a worker refuses to start, naming what is wrong and how to fix it, rather than
// pulling from a consumer that loses hand-backs or a stream that never gets the pool's tasks.
import { fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { AckPolicy, DiscardPolicy, RetentionPolicy } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { newPool, testServer } from './helpers.js';

const nats = testServer();

function worker(pool: string) {
  return startExecutionWorker({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' } });
}

async function addStream(pool: string): Promise<string> {
  const stream = `KBEXEC_${pool}`;
  await nats.jsm.streams.add({ name: stream, subjects: [`kbexec.${pool}.tasks`], retention: RetentionPolicy.Workqueue, discard: DiscardPolicy.New, max_msgs: 1000 });
  return stream;
}

describe("a pool consumer made by hand that does not take the pool's task subject", () => {
  it("a filter other than the pool's task subject: the worker fails its start, naming the filter", async () => {
    const pool = newPool('filtered');
    const stream = await addStream(pool);
    await nats.jsm.consumers.add(stream, { durable_name: `${pool}-workers`, ack_policy: AckPolicy.Explicit, filter_subject: `kbexec.${pool}.*` });
    await expect(worker(pool)).rejects.toMatchObject({
      problem: 'misconfigured',
      message: expect.stringContaining(`takes only kbexec.${pool}.*, not the pool's task subject kbexec.${pool}.tasks`),
    });
  });
});

describe("a pool stream made by hand that never gets the pool's tasks", () => {
  it("on another subject: the worker fails its start, naming the stream's subjects", async () => {
    const pool = newPool('elsewhere');
    const stream = `KBEXEC_${pool}`;
    await nats.jsm.streams.add({ name: stream, subjects: [`elsewhere.${pool}`], retention: RetentionPolicy.Workqueue });
    await expect(worker(pool)).rejects.toMatchObject({
      problem: 'misconfigured',
      message: expect.stringContaining(`The stream ${stream} does not take the pool's task subject kbexec.${pool}.tasks (its subjects: elsewhere.${pool})`),
    });
  });

  it('a mirror of another stream: the worker fails its start, naming the mirrored stream', async () => {
    const pool = newPool('mirror');
    const source = `SRC_${pool}`;
    await nats.jsm.streams.add({ name: source, subjects: [`source.${pool}`] });
    const stream = `KBEXEC_${pool}`;
    await nats.jsm.streams.add({ name: stream, mirror: { name: source } });
    await expect(worker(pool)).rejects.toMatchObject({
      problem: 'misconfigured',
      message: expect.stringContaining(`The stream ${stream} mirrors the stream ${source}`),
    });
  });
});
