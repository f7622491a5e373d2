import net from 'node:net';

/**
 * A loopback TCP proxy to stand between a worker (or a host) and the NATS server, so that a test
 * can break that process's network the ways real ones break.
 *
 * `cut()` is a partition, not a reset: connections stay open and nothing flows either way (bytes
 * wait, as they would behind a dead link that TCP has not given up on yet), so neither side
 * learns anything until its own timers say so. `restore()` lets the held bytes through, late:
 * what a worker said during the cut arrives after the host has moved on. `latency(ms)` delays
 * every byte by `ms` each way (order kept); `bandwidth(bytesPerSecond)` lets that many through
 * per second each way (order kept; 0: no limit). `reset()` drops every connection at once, and
 * `refuse(true)` turns new ones away until `refuse(false)`: a short outage of one process's link.
 * `toClients()` counts the bytes that have reached the proxied processes so far. `resetOn(text, nth, toClient)`:
 * the chunk from a proxied process (or, `toClient`, to it) that holds the `nth` (default 1st)
 * `text` from now on is dropped, and every connection with it (what a reset does to bytes not yet at the server);
 * `resets()` says how many times it did. `connections()` counts the proxied connections still open.
 */
export interface TcpProxy {
  /** `nats://127.0.0.1:<port>` of the proxy. */
  url: string;
  cut(): void;
  restore(): void;
  latency(ms: number): void;
  bandwidth(bytesPerSecond: number): void;
  reset(): void;
  refuse(on: boolean): void;
  toClients(): number;
  resetOn(text: string, nth?: number, toClient?: boolean, times?: number): void;
  resets(): number;
  connections(): number;
  close(): Promise<void>;
}

interface Link {
  client: net.Socket;
  upstream: net.Socket;
  /** Chunks held by a cut, by direction. */
  held: Array<{ to: net.Socket; chunk: Buffer }>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const links = new Set<Link>();
  let cut = false;
  let delayMs = 0;
  let refusing = false;
  let bytesPerSecond = 0;
  let toClients = 0;
  let resetText: string | undefined;
  /** How many more `resetText` to let through before the reset. */
  let resetAfter = 0;
  let resetToClient = false;
  /** Resets still to do after the next one (each at the next `resetText`). */
  let resetsMore = 0;
  let resets = 0;
  const occurrences = (chunk: Buffer, text: string) => {
    let count = 0;
    for (let at = chunk.indexOf(text); at !== -1; at = chunk.indexOf(text, at + text.length)) count++;
    return count;
  };
  const clients = new WeakSet<net.Socket>();
  const write = (to: net.Socket, chunk: Buffer) => {
    if (clients.has(to)) toClients += chunk.length;
    to.write(chunk);
  };
  /** Delayed chunks of each socket, in order, each with when it goes out: a later one never overtakes it. */
  const queues = new WeakMap<net.Socket, { due: Array<{ at: number; chunk: Buffer }>; timer: NodeJS.Timeout | undefined; lastAt: number }>();
  const pump = (to: net.Socket) => {
    const queue = queues.get(to)!;
    queue.timer = undefined;
    // What was still to cross a link that is gone is gone with it.
    if (to.destroyed) queue.due.length = 0;
    while (queue.due.length > 0 && queue.due[0]!.at <= Date.now()) {
      const { chunk } = queue.due.shift()!;
      if (!to.destroyed) write(to, chunk);
    }
    // Not below 0: `at` has fractions of a millisecond (crossMs), so it can be just past by now; Node 23+ warns (TimeoutNegativeWarning) of a negative delay.
    if (queue.due.length > 0) queue.timer = setTimeout(() => pump(to), Math.max(0, queue.due[0]!.at - Date.now()));
  };
  const send = (to: net.Socket, chunk: Buffer) => {
    if (delayMs === 0 && bytesPerSecond === 0 && !queues.get(to)?.due.length) return void write(to, chunk);
    let queue = queues.get(to);
    if (!queue) queues.set(to, (queue = { due: [], timer: undefined, lastAt: 0 }));
    // Out once the chunks before it are, and once it has crossed at the link's rate.
    const crossMs = bytesPerSecond ? (chunk.length * 1000) / bytesPerSecond : 0;
    queue.lastAt = Math.max(Date.now() + delayMs, queue.lastAt) + crossMs;
    queue.due.push({ at: queue.lastAt, chunk });
    queue.timer ??= setTimeout(() => pump(to), Math.max(0, queue.due[0]!.at - Date.now()));
  };
  const forward = (link: Link, from: net.Socket, to: net.Socket) =>
    from.on('data', (chunk: Buffer) => {
      const watched = resetToClient ? to === link.client : from === link.client;
      const seen = resetText !== undefined && watched ? occurrences(chunk, resetText) : 0;
      if (seen > 0 && (resetAfter -= seen) >= 0) {
        if (cut) link.held.push({ to, chunk });
        else send(to, chunk);
        return;
      }
      if (seen > 0) {
        if (resetsMore > 0) resetsMore--;
        else resetText = undefined;
        resets++;
        for (const each of [...links]) drop(each);
        return;
      }
      if (cut) link.held.push({ to, chunk });
      else send(to, chunk);
    });
  const drop = (link: Link) => {
    links.delete(link);
    link.client.destroy();
    link.upstream.destroy();
  };
  const server = net.createServer((client) => {
    if (refusing) return void client.destroy();
    const upstream = net.connect(targetPort, '127.0.0.1');
    const link: Link = { client, upstream, held: [] };
    clients.add(client);
    links.add(link);
    for (const socket of [client, upstream]) {
      socket.on('error', () => socket.destroy());
      socket.on('close', () => drop(link));
    }
    forward(link, client, upstream);
    forward(link, upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `nats://127.0.0.1:${port}`,
    cut() {
      cut = true;
    },
    restore() {
      cut = false;
      for (const link of links) for (const { to, chunk } of link.held.splice(0)) send(to, chunk);
    },
    latency(ms: number) {
      delayMs = ms;
    },
    bandwidth(rate: number) {
      bytesPerSecond = rate;
    },
    reset() {
      for (const link of [...links]) drop(link);
    },
    refuse(on: boolean) {
      refusing = on;
    },
    toClients() {
      return toClients;
    },
    resetOn(text: string, nth = 1, toClient = false, times = 1) {
      resetText = text;
      resetsMore = times - 1;
      resetAfter = nth - 1;
      resetToClient = toClient;
    },
    resets() {
      return resets;
    },
    connections() {
      return links.size;
    },
    async close() {
      for (const link of [...links]) drop(link);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
