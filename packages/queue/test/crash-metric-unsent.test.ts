/**
 * The `kb.plugin_execution.runner.crashes` metric counts runners that died (docs/observability.md):
 * an execution whose task was taken off the pool's stream before any worker took it fails
 * WORKER_CRASHED (`runner-lost`, phase `queued`: it never ran), but no runner died, nor started.
 * Real SDK, real nats-server, no worker.
 */
import { BASIC, expectError, fixturePlugins, installTestSdk, total, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { expect, it } from 'vitest';
import { newPool, testServer } from './helpers.js';

const nats = testServer();

it('an execution whose task no worker took (the stream purged) is counted as WORKER_CRASHED, not as a runner crash', async () => {
  const pool = newPool('crash-metric');
  const sdk = installTestSdk();
  const backend = new QueueBackend({ connection: { servers: nats.url }, pool, plugins: [fixturePlugins.basic], workspace: false });
  try {
    const waiting = [1, 2].map((input) => backend.execute({ pluginId: BASIC, handlerId: 'echo', input }, { timeoutMs: 60_000 }));
    const stream = `KBEXEC_${pool}`;
    await waitFor(async () => (await nats.jsm.streams.info(stream).catch(() => undefined))?.state.messages === 2, 10_000);
    await nats.jsm.streams.purge(stream);
    for (const result of await Promise.all(waiting)) {
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.details).toMatchObject({ reason: 'runner-lost', phase: 'queued' });
    }
    expect(total(await sdk.points('kb.plugin_execution.executions'), { 'kb.plugin_execution.outcome': 'WORKER_CRASHED' })).toBe(2);
    expect(total(await sdk.points('kb.plugin_execution.runner.starts'))).toBe(0);
    // Before: 2, a "runner that died" per execution, where no runner had started.
    expect(total(await sdk.points('kb.plugin_execution.runner.crashes'))).toBe(0);
  } finally {
    await backend.shutdown({ timeoutMs: 2000 });
    await sdk.uninstall();
  }
}, 30_000);
