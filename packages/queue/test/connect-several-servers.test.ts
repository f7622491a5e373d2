// A first connection that fails with several servers listed: nats.js says only what the last server
// it tried did; each listed server is looked at, and named with what it did.
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { BASIC, expectError, fixturePlugins } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { describe, expect, it } from 'vitest';
import { newPool } from './helpers.js';

describe('a first connection to several servers that fails', () => {
  it('names each server with what it did: the one that refused, and the silent one that took the time', async () => {
    const sockets = new Set<net.Socket>();
    const listener = net.createServer((socket) => void sockets.add(socket));
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    const silent = `nats://127.0.0.1:${(listener.address() as AddressInfo).port}`;
    const refusing = 'nats://127.0.0.1:1';
    const backend = new QueueBackend({ connection: { servers: [refusing, silent] }, pool: newPool('several-servers'), plugins: [fixturePlugins.basic] });
    try {
      const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }, { timeoutMs: 15_000 });
      expectError(result, 'WORKER_CRASHED');
      expect(result.error.message).toContain(`The queue backend could not connect to the NATS server (${refusing}, ${silent}): `);
      expect(result.error.message).toContain(`${silent}: what answers there accepted the connection but said nothing in 5 s`);
      expect(result.error.message).toContain(`${refusing}: nothing takes connections there (ECONNREFUSED)`);
    } finally {
      await backend.shutdown();
      for (const socket of sockets) socket.destroy();
      listener.close();
    }
  }, 20_000);
});
