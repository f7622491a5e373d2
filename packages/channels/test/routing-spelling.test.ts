/**
 * A static channel path shadows a parameterised one ("/rooms/lobby" over "/rooms/:room"). A
 * percent-encoded spelling of the static path ("%79" is "y") must not slip past it into the
 * parameterised channel with the very parameter value the static one owns, past its `auth`.
 */
import { mountWebSocketChannels } from '@kb-labs/plugin-execution-channels';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { labManifest, rawTargetStatus, upgradeStatus } from './helpers.js';

const setup = useChannelHarness((options) => new InProcessBackend(options));

describe('a static path and the spellings of it', () => {
  it('/rooms/lobb%79 reaches neither the static /rooms/lobby (matched as sent) nor /rooms/:room with room "lobby" (past the static auth)', async () => {
    const h = await setup();
    // The lab mount has /rooms/:room (auth optional); this one adds the static /rooms/lobby, which requires an identity.
    const lobby = mountWebSocketChannels(h.server, { ...labManifest, channels: [{ path: '/rooms/lobby', handler: 'chat', auth: 'required' }] } as never, {
      backend: h.backend,
      heartbeatIntervalMs: 0,
    });
    try {
      expect((await upgradeStatus(h.url('/rooms/lobby'))).status).toBe(401);
      for (const spelling of ['/rooms/lobb%79', '/rooms/%6Cobby', '/rooms/%6c%6f%62%62%79', '/rooms/lobb%79/', 'http://h/rooms/lobb%79']) {
        expect(await rawTargetStatus(h.url('/'), spelling), spelling).toBe(404);
      }
      expect(h.mount.stats().upgradesAccepted).toBe(0);
      // Other rooms still reach the parameterised channel, spelled as they may be.
      const kitchen = await h.connect('/rooms/kitch%65n');
      expect((await kitchen.request(1, 'context')).data).toMatchObject({ context: { host: { connection: { channel: '/rooms/:room', params: { room: 'kitchen' } } } } });
      expect(h.mount.stats().upgradesAccepted).toBe(1);
    } finally {
      await lobby.unmount();
    }
  });

  it('a parameter segment left empty (/pair//b) or with a percent escape that is not UTF-8 (%E0%A4%A, %FF) matches no channel: 404, not a connection with "" or a garbled value', async () => {
    const h = await setup();
    const pair = mountWebSocketChannels(h.server, { ...labManifest, channels: [{ path: '/pair/:a/:b', handler: 'echo' }] } as never, { backend: h.backend, heartbeatIntervalMs: 0 });
    try {
      for (const target of ['/pair//b', '/pair/a//', '/pair/%E0%A4%A/b', '/pair/a/%FF']) {
        expect(await rawTargetStatus(h.url('/'), target), target).toBe(404);
      }
      expect((await upgradeStatus(h.url('/pair/a/b'))).status).toBe(101);
      expect(h.mount.stats().upgradesAccepted + pair.stats().upgradesAccepted).toBe(1);
    } finally {
      await pair.unmount();
    }
  });
});
