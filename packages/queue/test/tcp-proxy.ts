import net from 'node:net';

/**
 * A loopback TCP proxy to stand between a worker (or a host) and the NATS server, so that a test
 * can cut that process's network and restore it.
 *
 * `cut()` is a partition, not a reset: connections stay open and nothing flows either way (bytes
 * wait in the buffers, as they would behind a dead link that TCP has not given up on yet), so
 * neither side learns anything until its own timers say so. `restore()` lets the held bytes
 * through, late: what a worker said during the cut arrives after the host has moved on.
 */
export interface TcpProxy {
  /** `nats://127.0.0.1:<port>` of the proxy. */
  url: string;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

interface Link {
  client: net.Socket;
  upstream: net.Socket;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const links = new Set<Link>();
  let cut = false;
  const join = (link: Link) => {
    link.client.pipe(link.upstream);
    link.upstream.pipe(link.client);
  };
  const part = (link: Link) => {
    link.client.unpipe(link.upstream);
    link.upstream.unpipe(link.client);
    link.client.pause();
    link.upstream.pause();
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const link = { client, upstream };
    links.add(link);
    for (const socket of [client, upstream]) {
      socket.on('error', () => socket.destroy());
      socket.on('close', () => {
        links.delete(link);
        client.destroy();
        upstream.destroy();
      });
    }
    if (cut) part(link);
    else join(link);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `nats://127.0.0.1:${port}`,
    cut() {
      cut = true;
      for (const link of links) part(link);
    },
    restore() {
      cut = false;
      for (const link of links) join(link);
    },
    async close() {
      for (const link of links) {
        link.client.destroy();
        link.upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
