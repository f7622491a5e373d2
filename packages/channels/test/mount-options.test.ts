import { mountWebSocketChannels, type MountWebSocketChannelsOptions } from '@kb-labs/plugin-execution-channels';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { delay, eventually, labManifest, labPlugin, upgradeStatus } from './helpers.js';

const setup = useChannelHarness((options) => new InProcessBackend(options));

describe('mount options at the edges of their ranges', () => {
  it.each([
    [{ authenticateTimeoutMs: 0 }, 'authenticateTimeoutMs: must be an integer from 1 to 2147483647'],
    [{ concurrencyPerConnection: 1025 }, 'concurrencyPerConnection: must be an integer from 1 to 1024'],
    [{ maxInFlightPerConnection: 100_001 }, 'maxInFlightPerConnection: must be an integer from 1 to 100000'],
    [{ maxPayload: 100 * 1024 * 1024 + 1 }, 'maxPayload: must be an integer from 1 to 104857600'],
    [{ heartbeatIntervalMs: -1 }, 'heartbeatIntervalMs: must be an integer from 0 to 2147483647'],
    [{ closeTimeoutMs: -1 }, 'closeTimeoutMs: must be an integer from 0 to 2147483647'],
    [{ maxConnections: 0 }, 'maxConnections: must be an integer from 1 to 9007199254740991, got 0'],
  ])('refuses %o, naming the field, and mounts nothing', async (given, said) => {
    const h = await setup();
    expect(() => mountWebSocketChannels(h.server, labManifest as never, { backend: h.backend, basePath: '/edge', ...given })).toThrow(said);
    expect(h.server.listenerCount('upgrade')).toBe(1);
  });

  it('takes each end of every range: 0 disables the heartbeat, a close timeout of 0, Infinity connections, the largest limits', async () => {
    const h = await setup();
    const edges: Array<Partial<MountWebSocketChannelsOptions>> = [
      { heartbeatIntervalMs: 0, closeTimeoutMs: 0, maxConnections: Number.POSITIVE_INFINITY, authenticateTimeoutMs: 1 },
      { concurrencyPerConnection: 1024, maxInFlightPerConnection: 100_000, maxPayload: 100 * 1024 * 1024, maxConnections: 1 },
    ];
    for (const options of edges) {
      const mount = mountWebSocketChannels(h.server, labManifest as never, { backend: h.backend, basePath: '/edge', ...options });
      expect((await upgradeStatus(h.url('/edge/echo'))).status).toBe(101);
      await mount.unmount();
    }
  });
});

describe('defaults', () => {
  it('a channel without limits of its own gets the documented ones: 1 MiB frames, one message at a time, 16 in flight', async () => {
    const h = await setup();
    expect(h.mount.channels.find((c) => c.channel === '/echo')).toMatchObject({ maxPayload: 1024 * 1024, concurrency: 1, maxInFlight: 16, timeoutMs: undefined, auth: 'optional' });
  });

  it('unmount() with no options gives running messages its documented 5000 ms: one held ~1 s finishes, and its disconnect handler runs', async () => {
    const h = await setup();
    const client = await h.connect('/slow');
    client.send({ id: 1, data: { gate: 'default-unmount', n: 1 } });
    await eventually(() => h.lab.entered.includes(1), 'message 1 started');
    let settled = false;
    const unmount = h.mount.unmount().finally(() => (settled = true));
    expect(await client.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    // Well past a tenth of the default, well short of it: the unmount is still waiting for the message.
    await delay(1000);
    expect(settled).toBe(false);
    h.lab.open('default-unmount');
    await unmount;
    expect(h.lab.events).toEqual([{ event: 'disconnect', connectionId: client.connectionId, cause: 'unmount' }]);
    expect(h.mount.stats()).toMatchObject({ executions: 3, failedExecutions: 0 });
  });
});

describe('allowedHeaders', () => {
  it('copies origin and user-agent by default, and names given in any case', async () => {
    const headers = { origin: 'http://example.test', 'user-agent': 'probe/1', 'x-trace': 'tr-1' };
    const byDefault = await setup();
    const plain = await byDefault.connect('/echo', { headers });
    expect(byDefault.mount.registry.get(plain.connectionId)?.info.headers).toEqual({ origin: 'http://example.test', 'user-agent': 'probe/1' });

    const mixedCase = await setup({ allowedHeaders: ['X-Trace'] });
    const traced = await mixedCase.connect('/echo', { headers });
    expect(mixedCase.mount.registry.get(traced.connectionId)?.info.headers).toEqual({ 'x-trace': 'tr-1' });
  });

  it('copies every value of a header the request repeats (Node keeps set-cookie as a list), joined as Node joins the others', async () => {
    const h = await setup({ allowedHeaders: ['set-cookie'] });
    // ws's client types allow one string per header; http.request sends each value of a list.
    const client = await h.connect('/echo', { headers: { 'set-cookie': ['a=1', 'b=2'] } as never });
    expect(h.mount.registry.get(client.connectionId)?.info.headers).toEqual({ 'set-cookie': 'a=1, b=2' });
  });
});

describe('the plugin given', () => {
  it('takes a registered plugin ({ id, root, manifest }) as well as its manifest', async () => {
    const h = await setup();
    const registered = { id: labManifest.id, root: labPlugin, manifest: labManifest };
    const mount = mountWebSocketChannels(h.server, registered as never, { backend: h.backend, basePath: '/registered', heartbeatIntervalMs: 0 });
    try {
      expect(mount.channels.map((c) => c.channel)).toContain('/registered/echo');
      expect((await upgradeStatus(h.url('/registered/echo'))).status).toBe(101);
    } finally {
      await mount.unmount();
    }
  });
});

describe('basePath', () => {
  it('takes "/" as no prefix and a trailing slash as none', async () => {
    const root = await setup({ basePath: '/' });
    expect((await upgradeStatus(root.url('/echo'))).status).toBe(101);
    const slashed = await setup({ basePath: '/ws/' });
    expect(slashed.mount.channels.map((c) => c.channel)).toContain('/ws/echo');
    expect((await upgradeStatus(slashed.url('/ws/echo'))).status).toBe(101);
  });
});
