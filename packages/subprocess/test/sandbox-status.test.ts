import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SandboxStatus } from '../src/host/sandbox-status.js';

const sockets: net.Socket[] = [];
let server: net.Server | undefined;

/** A real socket pair on loopback: what bubblewrap's `--json-status-fd` is to the host. */
async function statusPipe(): Promise<{ writer: net.Socket; reader: net.Socket }> {
  server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const writer = net.connect(port, '127.0.0.1');
  const [reader] = await accepted;
  sockets.push(writer, reader);
  return { writer, reader };
}

async function say(writer: net.Socket, reader: net.Socket, text: string): Promise<void> {
  // Listeners run in order: once this one has the chunk, the status (registered first) has read it.
  const seen = once(reader, 'data');
  writer.write(text);
  await seen;
}

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  server?.close();
  server = undefined;
});

describe('SandboxStatus', () => {
  it('forgets the init pid once bubblewrap reports that Node exited, so no late kill can reach a reused pid', async () => {
    const { writer, reader } = await statusPipe();
    const status = new SandboxStatus(reader);
    expect(status.started).toBe(false);
    await say(writer, reader, '{ "child-pid": 4242 }\n');
    expect(status.started).toBe(true);
    expect(status.initPid).toBe(4242);
    await say(writer, reader, '{ "exit-code": 0 }\n');
    expect(status.initPid).toBeUndefined();
    expect(status.nodePid()).toBeUndefined();
    expect(status.started).toBe(true);
  });
});
