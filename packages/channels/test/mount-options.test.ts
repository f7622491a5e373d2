import { mountWebSocketChannels, type MountWebSocketChannelsOptions } from '@kb-labs/plugin-execution-channels';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { labManifest, upgradeStatus } from './helpers.js';

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
