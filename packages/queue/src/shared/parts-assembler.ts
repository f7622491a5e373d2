import { headers as natsHeaders, type Msg } from '@nats-io/transport-node';
import { HEADER } from './wire.js';

/** Room over a receiver's maxPayloadBytes for the envelope around a body (the result's meta, a log line's fields). */
const ENVELOPE_BYTES = 64 * 1024;

interface Transfer {
  parts: Uint8Array[];
  bytes: number;
  touched: number;
}

/**
 * The receiving side of `Courier`: a message that is a part of a larger body is kept (and
 * answered) until its last part, which gives the whole body. A transfer over `maxPayloadBytes`
 * (and the envelope's room) is dropped and its sender told so (TransferRefusedError); ones whose
 * sender went quiet are swept.
 */
export class PartsAssembler {
  readonly #transfers = new Map<string, Transfer>();
  readonly #maxPayloadBytes: number;

  constructor(maxPayloadBytes: number) {
    this.#maxPayloadBytes = maxPayloadBytes;
  }

  /** The whole body when `msg` completes one (or is not a part); undefined while parts are missing. */
  take(msg: Msg): Uint8Array | undefined {
    const part = msg.headers?.get(HEADER.part);
    if (!part) return msg.data;
    const [index, count] = part.split('/').map(Number) as [number, number];
    const id = msg.headers!.get(HEADER.transfer);
    let transfer = this.#transfers.get(id);
    if (index === 0) this.#transfers.set(id, (transfer = { parts: [], bytes: 0, touched: performance.now() }));
    if (transfer && transfer.bytes + msg.data.length > this.#maxPayloadBytes + ENVELOPE_BYTES) {
      this.#transfers.delete(id);
      const refused = natsHeaders();
      refused.set(HEADER.refused, String(this.#maxPayloadBytes));
      msg.respond(undefined, { headers: refused });
      return undefined;
    }
    if (!transfer || transfer.parts.length !== index) {
      this.#transfers.delete(id);
      if (index < count - 1) msg.respond();
      return undefined;
    }
    transfer.parts.push(msg.data);
    transfer.bytes += msg.data.length;
    transfer.touched = performance.now();
    if (index < count - 1) {
      msg.respond();
      return undefined;
    }
    this.#transfers.delete(id);
    return Buffer.concat(transfer.parts, transfer.bytes);
  }

  /** Forget transfers not touched for `idleMs`. */
  sweep(idleMs: number): void {
    const before = performance.now() - idleMs;
    for (const [id, transfer] of this.#transfers) if (transfer.touched < before) this.#transfers.delete(id);
  }
}
