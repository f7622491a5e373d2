import { ValidationError } from '@kb-labs/plugin-execution-core';
import { readCloseArguments } from './close-codes.js';
import { encodeFrame } from './frames.js';
import { MAX_PUSH_JSON_CHARS, jsonLongerThan } from './push-size.js';
import { roomOf } from './route.js';

/** What is known about one WebSocket connection; JSON-serialisable, and what handlers see as `ctx.context.host.connection`. */
export interface ConnectionInfo {
  id: string;
  /** The mounted path pattern, e.g. "/ws/rooms/:room": the channel's name in the registry. */
  channel: string;
  pluginId: string;
  /** The request path, e.g. "/ws/rooms/lobby". */
  path: string;
  params: Record<string, string>;
  /** Query parameters; for a repeated key the last value wins. */
  query: Record<string, string>;
  /** Only the headers named in the mount's `allowedHeaders`, lower-cased. */
  headers: Record<string, string>;
  remoteAddress?: string;
  /** What the host's `authenticate` hook returned as `identity`. */
  identity?: unknown;
  /** Epoch ms. */
  connectedAt: number;
}

/** One live connection as the registry holds it. The channel mounter registers these; hosts may register their own. */
export interface ChannelConnection {
  readonly id: string;
  readonly channel: string;
  readonly info: Readonly<ConnectionInfo>;
  /** True while the socket is OPEN; sends to anything else are dropped. */
  readonly isOpen: boolean;
  /** Bytes queued in user space and in the socket, not yet handed to the kernel. */
  readonly bufferedAmount: number;
  /**
   * Send one already-encoded text frame (its UTF-8 bytes, for one frame shared by many sockets).
   * False when closed, or when the send would pass the buffer limit (the connection is then closed).
   */
  sendText(text: string | Buffer): boolean;
  /** Resolves true once its backlog is at most half the buffer limit, false if it closes first or `ended` aborts (a handler's awaited send is paced by it). */
  drained?(ended?: AbortSignal): Promise<boolean>;
  close(code?: number, reason?: string): void;
}

export interface BroadcastOptions {
  /** Connection ids that do not get the message. @default [] */
  exclude?: readonly string[] | undefined;
  /** Only connections on this request path (one room of a "/rooms/:room" channel), however the path is spelt (`/rooms/lobby/`, `/rooms/lobb%79`: the same params). @default every path of the channel */
  path?: string | undefined;
}

export interface ConnectionRegistryStats {
  /** Connections registered now. */
  connections: number;
  /** Of those, how many are OPEN. */
  open: number;
  /** Connections per channel. */
  byChannel: Record<string, number>;
  /** Connections ever registered. */
  registeredTotal: number;
  /** Push frames handed to sockets by send and broadcast. */
  messagesSent: number;
  broadcasts: number;
  /** Sends that found the target closed or over its buffer limit. */
  dropped: number;
}

/**
 * Every open connection of one or more channel mounts, by id and by channel. Hosts use it from
 * outside handlers, e.g. to push events to a channel; handlers reach it through `ctx.channel`.
 * Sends and broadcasts go only to OPEN sockets and respect each connection's backpressure limit.
 */
export class ConnectionRegistry {
  readonly #byId = new Map<string, ChannelConnection>();
  readonly #byChannel = new Map<string, Map<string, ChannelConnection>>();
  /** Each connection's path as a room (roomOf), for `broadcast({ path })`. */
  readonly #rooms = new WeakMap<ChannelConnection, string>();
  /**
   * Each channel's connections by room: a broadcast to one room looks at its members only. Found
   * among all of the channel's, each broadcast to a room of 10 cost ~200 µs of the host's CPU with
   * 10,000 connections on the channel, ~2.4 ms with 50,000.
   */
  readonly #byRoom = new Map<string, Map<string, Map<string, ChannelConnection>>>();
  #registeredTotal = 0;
  #messagesSent = 0;
  #broadcasts = 0;
  #dropped = 0;

  /** Add a connection; an id that is already registered is refused with ValidationError. */
  register(connection: ChannelConnection): void {
    if (this.#byId.has(connection.id)) throw new ValidationError(`Connection "${connection.id}" is already registered`, { details: { connectionId: connection.id } });
    this.#byId.set(connection.id, connection);
    let channel = this.#byChannel.get(connection.channel);
    if (!channel) {
      channel = new Map();
      this.#byChannel.set(connection.channel, channel);
    }
    channel.set(connection.id, connection);
    const room = roomOf(connection.info.path);
    this.#rooms.set(connection, room);
    let rooms = this.#byRoom.get(connection.channel);
    if (!rooms) this.#byRoom.set(connection.channel, (rooms = new Map()));
    let members = rooms.get(room);
    if (!members) rooms.set(room, (members = new Map()));
    members.set(connection.id, connection);
    this.#registeredTotal++;
  }

  /** Remove a connection; false if it was not registered. Does not close it. */
  unregister(connectionId: string): boolean {
    const connection = this.#byId.get(connectionId);
    if (!connection) return false;
    this.#byId.delete(connectionId);
    const channel = this.#byChannel.get(connection.channel);
    channel?.delete(connectionId);
    if (channel?.size === 0) this.#byChannel.delete(connection.channel);
    const rooms = this.#byRoom.get(connection.channel);
    const room = this.#rooms.get(connection)!;
    const members = rooms?.get(room);
    members?.delete(connectionId);
    if (members?.size === 0) rooms!.delete(room);
    if (rooms?.size === 0) this.#byRoom.delete(connection.channel);
    return true;
  }

  get(connectionId: string): ChannelConnection | undefined {
    return this.#byId.get(connectionId);
  }

  has(connectionId: string): boolean {
    return this.#byId.has(connectionId);
  }

  /** Connections of one channel, or all, in the order they connected. */
  list(channel?: string): ChannelConnection[] {
    if (channel === undefined) return [...this.#byId.values()];
    return [...(this.#byChannel.get(channel)?.values() ?? [])];
  }

  /** Channels with at least one connection. */
  channels(): string[] {
    return [...this.#byChannel.keys()];
  }

  count(channel?: string): number {
    return channel === undefined ? this.#byId.size : (this.#byChannel.get(channel)?.size ?? 0);
  }

  /**
   * Push `{ type: 'message', data }` to one connection. False when it is unknown, not OPEN, or over
   * its buffer limit. Throws ValidationError when `data` is not JSON-serialisable.
   */
  send(connectionId: string, data: unknown): boolean {
    const connection = this.#byId.get(connectionId);
    if (!connection) return false;
    return this.#deliver(connection, encodePush(data));
  }

  /** Push `{ type: 'message', data }` to `connection` (a handler's `ctx.channel.send` to its own), counted as send's are. */
  push(connection: ChannelConnection, data: unknown): boolean {
    return this.#deliver(connection, encodePush(data));
  }

  /**
   * Push `{ type: 'message', data }` to every OPEN connection of `channel`, encoding it once.
   * Returns how many got it. Throws ValidationError when `data` is not JSON-serialisable, or an
   * option is unknown (a misspelt `exlude` would send to the very connections to leave out) or
   * not of its type.
   */
  broadcast(channel: string, data: unknown, options: BroadcastOptions = {}): number {
    checkBroadcastOptions(options);
    const room = options.path === undefined ? undefined : roomOf(options.path);
    const members = room === undefined ? this.#byChannel.get(channel) : this.#byRoom.get(channel)?.get(room);
    const text = encodePush(data);
    this.#broadcasts++;
    if (!members) return 0;
    // One buffer every socket sends and holds while it waits: a string would be made bytes per socket,
    // and a large frame to clients that read slowly held once per client.
    const frame = members.size > 1 ? Buffer.from(text) : text;
    const exclude = options.exclude && options.exclude.length > 0 ? new Set(options.exclude) : undefined;
    let delivered = 0;
    // A copy: a send over the buffer limit closes (and later unregisters) its connection.
    for (const connection of [...members.values()]) {
      if (exclude?.has(connection.id)) continue;
      if (this.#deliver(connection, frame)) delivered++;
    }
    return delivered;
  }

  /** Close one connection; false if it is not registered. Throws ValidationError for a code or reason ctx.channel.close() refuses too. */
  close(connectionId: string, code?: number, reason?: string): boolean {
    const close = readCloseArguments('registry.close()', code, reason);
    const connection = this.#byId.get(connectionId);
    if (!connection) return false;
    connection.close(close.code, close.reason);
    return true;
  }

  stats(): ConnectionRegistryStats {
    const byChannel: Record<string, number> = {};
    for (const [channel, members] of this.#byChannel) byChannel[channel] = members.size;
    let open = 0;
    for (const connection of this.#byId.values()) if (connection.isOpen) open++;
    return {
      connections: this.#byId.size,
      open,
      byChannel,
      registeredTotal: this.#registeredTotal,
      messagesSent: this.#messagesSent,
      broadcasts: this.#broadcasts,
      dropped: this.#dropped,
    };
  }

  #deliver(connection: ChannelConnection, text: string | Buffer): boolean {
    if (connection.isOpen && connection.sendText(text)) {
      this.#messagesSent++;
      return true;
    }
    this.#dropped++;
    return false;
  }
}

/** The JSON text of a push frame; ValidationError for data JSON cannot carry. */
export function encodePush(data: unknown): string {
  // JSON would leave the field out: the client would get a message without data, the sender no word.
  if (data === undefined || typeof data === 'function' || typeof data === 'symbol') {
    const what = data === undefined ? 'undefined' : typeof data === 'function' ? 'a function' : 'a symbol';
    throw new ValidationError(`Channel message data is ${what}, which JSON has no form for (send null for a message without data)`, { details: { reason: 'not-serializable' } });
  }
  if (jsonLongerThan(data, MAX_PUSH_JSON_CHARS)) {
    throw new ValidationError(
      `Channel message data is over ${MAX_PUSH_JSON_CHARS / (1024 * 1024)} MiB written as JSON, the most a push takes (an object held once in memory is written at every key that holds it)`,
      { details: { reason: 'too-large', limit: MAX_PUSH_JSON_CHARS } },
    );
  }
  const text = encodeFrame({ type: 'message', data });
  if (text === undefined) {
    throw new ValidationError('Channel message data is not JSON-serialisable (BigInt or a cycle?)', { details: { reason: 'not-serializable' } });
  }
  return text;
}

const BROADCAST_OPTIONS = ['exclude', 'path'];

function checkBroadcastOptions(options: unknown): asserts options is BroadcastOptions {
  const refuse = (message: string, path: string): never => {
    throw new ValidationError(`ConnectionRegistry.broadcast(): ${message}`, { details: { path } });
  };
  if (options === null || typeof options !== 'object' || Array.isArray(options)) refuse('options must be an object { exclude?, path? }', 'options');
  const { exclude, path } = options as Record<string, unknown>;
  const unknown = Object.keys(options as object).filter((key) => !BROADCAST_OPTIONS.includes(key));
  if (unknown.length > 0) refuse(`unknown option ${JSON.stringify(unknown[0])} (it takes exclude and path)`, `options.${unknown[0]}`);
  if (exclude !== undefined && (!Array.isArray(exclude) || exclude.some((id) => typeof id !== 'string'))) refuse('options.exclude must be an array of connection ids', 'options.exclude');
  if (path !== undefined && typeof path !== 'string') refuse('options.path must be a request path string', 'options.path');
}
