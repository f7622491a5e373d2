import { AsyncLocalStorage } from 'node:async_hooks';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';

/** Node's channel for each TCP client socket `net.connect()` makes (published as it is made, in its maker's async context). */
const CLIENT_SOCKET_CHANNEL = 'net.client.socket';

interface Attempt {
  sockets: Set<Socket>;
  settled: boolean;
}

const current = new AsyncLocalStorage<Attempt>();
let attemptsUnderWay = 0;

function onClientSocket(message: unknown): void {
  const attempt = current.getStore();
  // What the connection dials later (a reconnection) runs in the attempt's context too: not its.
  if (attempt && !attempt.settled) attempt.sockets.add((message as { socket: Socket }).socket);
}

/**
 * Runs a first connection attempt, and destroys the sockets it dialled if it fails. nats.js (3.4)
 * closes a transport only once it has connected: an attempt that timed out against something that
 * accepted it and never spoke (a stopped server, not a NATS port), or whose SYNs go unanswered,
 * leaves its socket open, and with it the process, until the other end closes it. The sockets are
 * known by Node's own channel, in the attempt's async context, not by nats.js's internals; the
 * channel is listened to only while an attempt is under way. A TLS socket that `tls.connect()`
 * dials itself (`handshakeFirst`) is on no channel: `connect` gives it `signal` (tls.connect's own
 * option), aborted when the attempt fails.
 */
export async function closingSocketsOnFailure<T>(connect: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const attempt: Attempt = { sockets: new Set(), settled: false };
  const failed = new AbortController();
  if (attemptsUnderWay++ === 0) subscribe(CLIENT_SOCKET_CHANNEL, onClientSocket);
  try {
    return await current.run(attempt, connect, failed.signal);
  } catch (error) {
    for (const socket of attempt.sockets) socket.destroy();
    failed.abort();
    throw error;
  } finally {
    attempt.settled = true;
    attempt.sockets.clear();
    if (--attemptsUnderWay === 0) stopListening();
  }
}

function stopListening(): void {
  unsubscribe(CLIENT_SOCKET_CHANNEL, onClientSocket);
  // On Node 20 an AsyncLocalStorage in use hooks every promise of the process: only while an attempt is under way.
  current.disable();
}
