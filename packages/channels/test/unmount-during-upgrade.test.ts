/**
 * An unmount that begins while an upgrade it already took is being admitted (a few microtasks, with
 * no `authenticate` hook; the hook's whole run, with one): the client is refused with 503, as one
 * arriving during the unmount is, not sent a 101 and then cut off (1006).
 */
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { rawClient } from './helpers.js';

const setup = useChannelHarness((options) => new InProcessBackend(options));

describe('an unmount while an upgrade is being admitted', () => {
  it('refuses that client with 503 instead of completing its handshake and cutting it off', async () => {
    const h = await setup();
    let unmounting: Promise<void> | undefined;
    // Runs right after the mount's own 'upgrade' listener took the request, in the same emit: inside its admission.
    const unmountNow = (): void => {
      unmounting ??= h.mount.unmount({ timeoutMs: 2000 });
    };
    h.server.on('upgrade', unmountNow);
    const client = rawClient(h.url('/echo'));
    await client.closed;
    await unmounting;
    h.server.off('upgrade', unmountNow);
    // Before: 'HTTP/1.1 101 Switching Protocols', then the socket cut (the client's 1006).
    expect(client.received()).toMatch(/^HTTP\/1\.1 503 /);
    expect(h.mount.stats().connections).toBe(0);
  });
});
