/**
 * An unmount that comes after a connection began to close (its client sent its close, or the server
 * already closed it on its own) and before its socket closed: the unmount did not end that
 * connection, so its disconnect handler is not told it did, and abortOnClose treats a client that
 * left as one that left.
 */
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { describe, expect, it } from 'vitest';
import { useChannelHarness } from './channel-suite.js';
import { clientFrame, eventually, halfOpenRawClient, rawClient } from './helpers.js';

const setup = useChannelHarness((options) => new InProcessBackend(options));

/** A client's close frame with `code` and `reason`. */
function closeFrame(code: number, reason: string): Buffer {
  const payload = Buffer.alloc(2);
  payload.writeUInt16BE(code);
  return clientFrame(0x8, Buffer.concat([payload, Buffer.from(reason)]));
}

describe('an unmount after a connection began to close', () => {
  it('of a client that sent its close (its TCP side still open): its disconnect is told the client\'s close and no cause, as for a client that left before the unmount', async () => {
    const h = await setup({ closeTimeoutMs: 300 });
    const client = halfOpenRawClient(h.url('/echo'), true);
    await eventually(() => client.received().includes('"ready"'), 'the client connected');
    client.socket.write(closeFrame(4000, 'bye'));
    await eventually(() => h.mount.registry.list('/echo').every((c) => !c.isOpen), 'the server took the client\'s close');
    await h.mount.unmount({ timeoutMs: 2000 });
    // Before: { code: 4000, reason: 'bye', cause: 'unmount' }, an unmount said to have ended what the client closed.
    expect(h.lab.events).toMatchObject([{ event: 'disconnect', code: 4000, reason: 'bye', cause: null }]);
    client.socket.destroy();
  });

  it('the server closed on its own (the client has not answered): its disconnect is told that close and no cause', async () => {
    const h = await setup({ closeTimeoutMs: 300 });
    // Reads the close and never answers it.
    const client = rawClient(h.url('/echo'));
    await eventually(() => h.mount.registry.count('/echo') === 1, 'the client connected');
    h.mount.registry.close(h.mount.registry.list('/echo')[0]!.id, 4003, 'kicked');
    await h.mount.unmount({ timeoutMs: 2000 });
    // Before: { code: 4003, reason: 'kicked', cause: 'unmount' }.
    expect(h.lab.events).toMatchObject([{ event: 'disconnect', code: 4003, reason: 'kicked', cause: null }]);
    await client.closed;
  });

  it('with abortOnClose, of a client that sent its close while its message ran: the message is aborted when its socket goes and the disconnect runs, not held to the unmount\'s timeoutMs and dropped with it', async () => {
    const h = await setup({ abortOnClose: true, closeTimeoutMs: 300 });
    const client = halfOpenRawClient(h.url('/slow'), true);
    await eventually(() => h.mount.registry.count('/slow') === 1, 'the client connected');
    client.socket.write(clientFrame(0x1, Buffer.from(JSON.stringify({ id: 1, data: { gate: 'never', n: 1 } }))));
    await eventually(() => h.lab.entered.includes(1), 'the message started');
    client.socket.write(closeFrame(4000, 'bye'));
    await eventually(() => h.mount.registry.count('/slow') === 0 || !h.mount.registry.list('/slow')[0]!.isOpen, 'the server took the client\'s close');
    await h.mount.unmount({ timeoutMs: 1500 });
    // Before: the message ran on (the gate never opens) until the unmount's 1500 ms, which then
    // aborted it and the disconnect handler behind it, unrun.
    expect(h.lab.events).toMatchObject([{ event: 'disconnect', cause: null }]);
    client.socket.destroy();
  });
});
