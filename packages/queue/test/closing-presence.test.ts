/**
 * What a worker tells the pool while close() stops what it runs: it takes nothing new, so its
 * presences say it drains (hosts' stats and health, and peers that hand tasks back for it), as drain()'s do.
 */
import v8 from 'node:v8';
import { BASIC, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend, startExecutionWorker } from '@kb-labs/plugin-execution-queue';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SUBJECT_PREFIX, PoolSubjects } from '../src/shared/subjects.js';
import { natsServer, newPool } from './helpers.js';

describe('a worker being closed', () => {
  it('says in its presences that it takes nothing new, until its closing one', async () => {
    const server = await natsServer();
    const pool = newPool('closing-presence');
    // A handler that ignores its signal: close() waits for its thread to be ended, several presence periods.
    const worker = await startExecutionWorker({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic], backend: { type: 'worker-pool' }, concurrency: 1, heartbeatMs: 50 });
    const backend = new QueueBackend({ connection: { servers: server.url }, pool, plugins: [fixturePlugins.basic], workspace: false });
    const nc = await connect({ servers: server.url });
    try {
      const result = backend.execute({ pluginId: BASIC, handlerId: 'never-resolves', input: {} }, { timeoutMs: 60_000 });
      await waitFor(() => worker.running === 1, 10_000);
      const presences: Array<{ draining?: boolean; closing?: boolean }> = [];
      nc.subscribe(new PoolSubjects(DEFAULT_SUBJECT_PREFIX, pool).presence, { callback: (error, msg) => void (error ?? presences.push(v8.deserialize(msg.data) as { draining?: boolean; closing?: boolean })) });
      await nc.flush();
      const closed = worker.close();
      await waitFor(() => presences.length > 0, 10_000);
      await closed;
      await result;
      // (One the worker sent just before close() may still arrive first.)
      const from = presences.findIndex((p) => p.draining === true);
      expect(from, JSON.stringify(presences)).toBeGreaterThanOrEqual(0);
      expect(presences.slice(from).filter((p) => !p.closing && p.draining !== true)).toEqual([]);
    } finally {
      await nc.close();
      await worker.close();
      await backend.shutdown({ timeoutMs: 0 });
      await server.stop();
    }
  });
});
