import { describe, expect, it } from 'vitest';
import { PeerPlugins } from '../src/runner/peer-plugins.js';
import type { PresenceBody } from '../src/shared/wire.js';

/** A peer's presence: `plugins` as `id@version`, said every `heartbeatMs`. */
function presence(id: string, heartbeatMs: number, plugins = ['@x/p@1.0.0']): PresenceBody {
  return { id, host: 'peer-host', pid: 1, concurrency: 1, running: 0, heartbeatMs, backend: 'in-process', plugins };
}

describe('PeerPlugins', () => {
  it('knows the plugin versions of live peers, not its own nor those of peers closing', () => {
    const peers = new PeerPlugins('self');
    peers.saw(presence('self', 1000, ['@x/own@1.0.0']));
    peers.saw(presence('a', 1000));
    peers.saw({ ...presence('b', 1000, ['@x/b@2.0.0']), closing: true });
    expect(peers.has('@x/p', '1.0.0')).toBe(true);
    expect(peers.has('@x/own', '1.0.0')).toBe(false);
    expect(peers.has('@x/b', '2.0.0')).toBe(false);
  });

  it('lets go of peers gone silent as presences come in, not only when a task asks (a long-lived worker kept every crashed peer)', async () => {
    const peers = new PeerPlugins('self');
    // 500 peers that crashed after one presence each (a worker id is new at each start).
    for (let i = 0; i < 500; i++) peers.saw(presence(`crashed-${i}`, 5));
    expect(peers.known).toBe(500);
    // Past three of their periods, and past the sweep's own interval.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    peers.saw(presence('alive', 1000));
    expect(peers.known).toBe(1);
    expect(peers.has('@x/p', '1.0.0')).toBe(true);
  });

  it('takes a peer for gone past three of its own presence periods, one whose period is no number as saying every second, and one draining at once', async () => {
    const peers = new PeerPlugins('self');
    peers.saw(presence('quick', 200, ['@x/quick@1.0.0']));
    for (const [id, heartbeatMs] of [['zero', 0], ['negative', -5], ['nan', Number.NaN]] as const) peers.saw(presence(id, heartbeatMs, [`@x/${id}@1.0.0`]));
    peers.saw({ ...presence('draining', 1000, ['@x/draining@1.0.0']), draining: true });
    expect(peers.has('@x/quick', '1.0.0')).toBe(true);
    expect(peers.has('@x/draining', '1.0.0')).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(peers.has('@x/quick', '1.0.0')).toBe(false);
    for (const id of ['zero', 'negative', 'nan']) expect(peers.has(`@x/${id}`, '1.0.0')).toBe(true);
  });

  it('once it listens, may have any version for three of its own periods (its peers may not have been heard yet), then only what it heard', async () => {
    const peers = new PeerPlugins('self', 200);
    expect(peers.has('@x/p', '2.0.0')).toBe(false);
    peers.listening();
    expect(peers.has('@x/p', '2.0.0')).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 800));
    // Listening again (a reconnection) does not start the wait again.
    peers.listening();
    expect(peers.has('@x/p', '2.0.0')).toBe(false);
  });
});
