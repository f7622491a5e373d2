// A pool whose workers run different local backends: a handler may land on any of them.
import { fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsServer, newPool, startWorker, type WorkerProcess } from './helpers.js';

let server: Awaited<ReturnType<typeof natsServer>>;
const pool = newPool('mixed');
let workers: WorkerProcess[] = [];

beforeAll(async () => {
  server = await natsServer();
  workers = await Promise.all(['worker-pool', 'in-process'].map((backend) => startWorker({ natsUrl: server.url, pool, backend, concurrency: 1 })));
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await server?.stop();
});

describe('health().isolation of a pool whose workers differ', () => {
  it('is the weakest in force, none when one worker runs handlers in its own thread, and the reason lists them', async () => {
    const backend = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic] });
    try {
      // Until both workers' presence reached the host, it may know one of them only.
      await waitFor(async () => (await backend.health()).isolation.reason.includes('differ'), 10_000);
      const { isolation } = await backend.health();
      const [threaded, inProcess] = workers;
      expect(isolation).toEqual({
        requested: 'remote workers',
        active: 'none',
        layers: ['remote-worker', ...isolation.layers.slice(1)],
        reason: `the workers of pool "${pool}" differ (none: ${inProcess!.id} (in-process); thread: ${threaded!.id} (worker-pool)), and a handler may run on any of them: the weakest, none, is what is in force`,
      });
    } finally {
      await backend.shutdown();
    }
  });
});
