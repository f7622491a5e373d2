/**
 * A host whose onError unmounts (a fatal setup error: stop serving) can be told of a refused
 * connection's `context` failure: the unmount it starts then must end that connection too, as it
 * ends every refused socket it finds, not leave it counted and open until closeTimeoutMs.
 */
import type { ChannelMount } from '@kb-labs/plugin-execution-channels';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { eventually, rawClient } from './helpers.js';

const setup = useChannelHarness((options) => new InProcessBackend(options));

describe('an onError hook that unmounts when it hears of a context failure', () => {
  it('the unmount ends the refused connection it was told of: none left counted, its silent client\'s socket destroyed', async () => {
    let mount: ChannelMount | undefined;
    const unmounts: Array<Promise<void>> = [];
    const h = await setup({
      // Far past the test's time: only the unmount can end the socket of a client that never answers the close.
      closeTimeoutMs: 60_000,
      context: () => {
        throw new Error('no tenant header');
      },
      onError: (_error, info) => {
        if (info.phase === 'context') unmounts.push(mount!.unmount({ timeoutMs: 2000 }));
      },
    });
    mount = h.mount;
    // Reads (the 101 and the close frame) and never answers.
    const silent = rawClient(h.url('/echo'));
    await eventually(() => unmounts.length === 1, 'the context failure reported, and the unmount started');
    await unmounts[0];
    // Before: the socket was refused after the unmount had ended the refused ones it knew of.
    expect(h.mount.stats()).toMatchObject({ connections: 0, closingConnections: 0 });
    await silent.closed;
    expect(silent.received()).toMatch(/^HTTP\/1\.1 101/);
  });
});
