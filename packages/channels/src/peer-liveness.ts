import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Whether a connection's client showed a sign of life since the last heartbeat tick: a pong or a
 * frame from it, or bytes it took while the kernel's buffer for it was full (what a buffer with
 * room takes says nothing of the client). One reading a stream over a slow link is alive, though
 * its pong waits behind what it has yet to read.
 */
export class PeerLiveness {
  #heard = true;
  #socket: Socket | undefined;
  /** At the last tick: how many of the socket's bytes the kernel had taken, and whether more waited for it. */
  #takenAtTick = 0;
  #backloggedAtTick = false;

  /**
   * `socket`: the one the upgrade came on (a net.Socket or a TLS one: what counts the bytes it wrote;
   * another kind is not watched). Told by its counters, not by `instanceof`: importing node:net
   * for that would load it with the umbrella, at every host's start-up.
   */
  watch(socket: Duplex): void {
    this.#socket = typeof (socket as Partial<Socket>).bytesWritten === 'number' ? (socket as Socket) : undefined;
  }

  heard(): void {
    this.#heard = true;
  }

  /** Whether the client showed life since the previous tick; from now on it must again. */
  tick(): boolean {
    const alive = this.#tookBytes() || this.#heard;
    this.#heard = false;
    return alive;
  }

  #tookBytes(): boolean {
    const socket = this.#socket;
    if (!socket) return false;
    const taken = socket.bytesWritten - socket.writableLength;
    const backlogged = socket.writableLength > 0;
    // (Full then or now: a buffer that filled since took bytes with room first, once; a dead peer's stays full.)
    const took = (this.#backloggedAtTick || backlogged) && taken > this.#takenAtTick;
    this.#takenAtTick = taken;
    this.#backloggedAtTick = backlogged;
    return took;
  }
}
