// Forged tasks (headers no host writes) and unreadable messages are dropped by a worker: said to
// its operator, with a count, in one process warning a minute at most (KB_PLUGIN_PEER_FORGED),
// not one per message, and not at all while peers send only what hosts and workers do.
import { BASIC, expectOk, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { headers } from '@nats-io/transport-node';
import { afterEach, expect, it } from 'vitest';
import { newPool, testServer } from './helpers.js';

const nats = testServer();
const closing: Array<() => Promise<unknown>> = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

afterEach(async () => {
  await Promise.all(closing.splice(0).map((close) => close()));
});

it('twenty forged tasks are one KB_PLUGIN_PEER_FORGED warning, not twenty (nor none, as before); an honest execution none', async () => {
  const pool = newPool('forged-said');
  const worker = await startExecutionWorker({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 2, id: 'said-worker' });
  closing.push(() => worker.close());
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic] });
  closing.push(() => backend.shutdown({ timeoutMs: 2000 }));
  const warnings: string[] = [];
  const onWarning = (warning: Error & { code?: string }) => void (warning.code === 'KB_PLUGIN_PEER_FORGED' && warnings.push(warning.message));
  process.on('warning', onWarning);
  try {
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'honest' }, { timeoutMs: 20_000 }));
    await sleep(200);
    expect(warnings).toEqual([]);
    // Forged: a caller that is no host's subject.
    for (let i = 0; i < 20; i++) {
      const h = headers();
      h.set('Kb-Reply', 'not-a-caller');
      h.set('Kb-Exec-Id', `forged-task-${i}`);
      h.set('Kb-Lost-Ms', '3000');
      await nats.nc.request(`kbexec.${pool}.tasks`, new Uint8Array(0), { headers: h, timeout: 5000 });
    }
    await sleep(2000);
  } finally {
    process.off('warning', onWarning);
  }
  // Before: none (each dropped without a word).
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatch(/^Worker said-worker dropped 1 task\(s\) whose headers no host of the pool writes/);
  const left = (await nats.jsm.streams.info(`KBEXEC_${pool}`)).state.messages;
  expect(left).toBe(0);
}, 60_000);
