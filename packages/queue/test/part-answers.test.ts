// A large input crosses to its worker in parts, each a request its host waits for the answer to
// (test/courier-parts.test.ts): one answer each, on a real host, worker and nats-server.
import { expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { afterEach, describe, expect, it } from 'vitest';
import { QUEUE_PLUGIN, QUEUE_PROBE, newPool, testServer } from './helpers.js';

/** `nats.nc` watches the host's inbox: the test server gives every connection every subject. */
const nats = testServer();
const closing: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const close of closing.splice(0).reverse()) await close();
});

describe("a worker's answers to the parts of an input", () => {
  it('are one per part: before, each part but the last was answered twice (the second a message its host dropped)', async () => {
    const pool = newPool('part-answers');
    const worker = await startExecutionWorker({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic, QUEUE_PLUGIN], backend: { type: 'in-process' } });
    closing.push(() => worker.close());
    const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic, QUEUE_PLUGIN], workspace: false });
    closing.push(() => backend.shutdown({ timeoutMs: 3000 }));
    // A part's answer is empty; the server's answer to the host's task publish is not.
    const answers = new Map<string, number>();
    const watch = nats.nc.subscribe(`_INBOX.kbexec.${pool}.host.>`, { callback: (_error, msg) => void (msg.data.length === 0 && answers.set(msg.subject, (answers.get(msg.subject) ?? 0) + 1)) });
    closing.push(async () => watch.unsubscribe());
    await nats.nc.flush();
    // Four parts of 256 KiB.
    const input = 'i'.repeat(1_000_000);
    const result = await backend.execute({ pluginId: QUEUE_PROBE, handlerId: 'sized', input }, { timeoutMs: 20_000 });
    expectOk(result);
    expect(result.data).toEqual({ length: input.length });
    // The worker sent its answers before its result; what the server queued for this connection by then is here after a round trip.
    await nats.nc.flush();
    expect([...answers.values()]).toEqual([1, 1, 1, 1]);
  });
});
