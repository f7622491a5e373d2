/**
 * What a worker says of itself once close() resolved with its NATS server away: a handler it
 * stopped, whose report waited for the link, no longer counts as running.
 */
import { BASIC, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { describe, expect, it } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { newPool } from './helpers.js';

describe('a worker closed while its server is away', () => {
  it('counts nothing running once close() has resolved', async () => {
    const own = await startNatsServer();
    const pool = newPool('closed-counts');
    let lost!: () => void;
    const linkLost = new Promise<void>((resolve) => (lost = resolve));
    const onWarning = (warning: Error & { code?: string }) => void (warning.code === 'KB_PLUGIN_WORKER_CONNECTION' && lost());
    process.on('warning', onWarning);
    const worker = await startExecutionWorker({ connection: { servers: own.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'in-process' }, concurrency: 1 });
    const backend = new QueueBackend({ connection: { servers: own.url }, pool, plugins: [fixturePlugins.basic], workspace: false });
    try {
      const result = backend.execute({ pluginId: BASIC, handlerId: 'slow', input: { ms: 60_000 } }, { timeoutMs: 60_000 });
      await waitFor(() => worker.running === 1, 10_000);
      await own.stop();
      // The worker noticed (its warning): what its execution reports now waits for the link.
      await linkLost;
      await worker.close();
      expect(worker.running).toBe(0);
      await result;
    } finally {
      process.off('warning', onWarning);
      await worker.close();
      await backend.shutdown({ timeoutMs: 0 });
      await own.stop();
    }
  });
});
