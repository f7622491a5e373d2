// A worker's concurrency, left out, is one per CPU: no more than its worker-pool backend's threads,
// which refuse more (the worker gives its concurrency to its backend as maxConcurrency).
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { expect, it } from 'vitest';
import { newPool, testServer } from './helpers.js';

const nats = testServer();

it('a worker-pool worker given maxThreads and no concurrency takes that many at once, not one per CPU (which its backend refused, as maxConcurrency)', async () => {
  const pool = newPool('default-concurrency');
  // Before: refused on a machine of 2 CPUs or more, "maxConcurrency: must not exceed maxThreads (1) …", an option not given.
  const worker = await startExecutionWorker({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'worker-pool', maxThreads: 1 } });
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], workspace: false });
  try {
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 20_000 }));
    expect((await backend.stats()).runners?.workers).toMatchObject([{ id: worker.id, backend: 'worker-pool', concurrency: 1 }]);
  } finally {
    await backend.shutdown({ timeoutMs: 2000 });
    await worker.close();
  }
});
