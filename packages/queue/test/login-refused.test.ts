// A server that refuses the pool's logins for a while (restarted with a user list that lacks
// theirs, a credentials rotation half done) is a pause, as a restart is: nats.js gives up after two
// refused logins in a row unless told not to, and then the host and worker were dead for good.
import { BASIC, expectOk, fixturePlugins, waitFor } from '@kb-labs/plugin-execution-conformance';
import { QueueBackend } from '@kb-labs/plugin-execution-queue';
import { expect, it } from 'vitest';
import { startNatsServer } from '../../../scripts/nats-server.mjs';
import { QUEUE_PLUGIN, newPool, startWorker } from './helpers.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

it('host and worker reconnect through a spell of refused logins, the worker saying so on stderr, and serve again', async () => {
  const first = await startNatsServer();
  const port = Number(new URL(first.url).port);
  const pool = newPool('login-refused');
  const worker = await startWorker({ natsUrl: first.url, pool, backend: 'in-process', concurrency: 1 });
  const backend = new QueueBackend({ connection: { servers: first.url }, pool, plugins: [fixturePlugins.basic, QUEUE_PLUGIN] });
  let back: Awaited<ReturnType<typeof startNatsServer>> | undefined;
  try {
    expectOk(await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 1 }));
    await first.stop();
    const refusing = await startNatsServer({ port, authorization: '{ users = [ { user: someone, password: else } ] }' });
    // Reconnection is tried every quarter of a second: many refusals in a row.
    await sleep(2500);
    await refusing.stop();
    back = await startNatsServer({ port });
    await waitFor(async () => (await backend.health()).ok, 15_000);
    const result = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 2 }, { timeoutMs: 20_000 });
    expectOk(result);
    expect(result.data).toBe(2);
    const said = worker.output();
    expect(said).toMatch(/Worker \S+ lost its connection to the NATS server \(\S+\); it reconnects/);
    expect(said).toMatch(/Worker \S+ is refused by the NATS server as it reconnects \(.*[Aa]uthorization.*\); it keeps trying/);
    expect(said).toMatch(/Worker \S+ is connected to the NATS server again/);
    // Once per spell, not at every refused attempt.
    expect(said.match(/is refused by the NATS server/g)).toHaveLength(1);
  } finally {
    await backend.shutdown({ timeoutMs: 2000 });
    await worker.stop();
    await back?.stop();
    await first.stop();
  }
}, 60_000);
