import type { NatsConnection } from '@nats-io/transport-node';

/**
 * The largest body the courier sends as one message, and its parts' size above that. Small
 * enough to cross a slow link (256 KiB/s) well within a heartbeat window: a message as large as
 * the server's `max_payload` (8 MB) would hold the link, and the heartbeats queued behind it,
 * for longer than `workerLostMs`.
 */
const COURIER_PART_BYTES = 256 * 1024;

/** Room left in each message for its headers, below the server's `max_payload`. */
const HEADER_ROOM = 4096;

/**
 * The largest body one message carries on this connection: the server's `max_payload`, less room
 * for headers (half of it on a server whose limit is below 8 KiB: whatever its size, nothing sent
 * may exceed it, or the publish fails).
 */
export function partBytes(nc: NatsConnection): number {
  const most = maxPayload(nc);
  return most - Math.min(HEADER_ROOM, Math.floor(most / 2));
}

/** The largest body sent as one message on this connection, larger ones going in parts: the server's limit, and COURIER_PART_BYTES. */
export function courierPartBytes(nc: NatsConnection): number {
  return Math.min(partBytes(nc), COURIER_PART_BYTES);
}

/** The server's `max_payload`: the largest message, headers and body together. */
export function maxPayload(nc: NatsConnection): number {
  return nc.info?.max_payload ?? 1024 * 1024;
}
