import { headers as natsHeaders, type Msg } from '@nats-io/transport-node';
import { HEADER } from './wire.js';

/** Room over a receiver's maxPayloadBytes for the envelope around a body (the result's meta, a log line's fields). */
const ENVELOPE_BYTES = 64 * 1024;

/** What one execution's transfers may hold at once, in bodies of the largest size: a result and a log line, say. */
const BODIES_PER_EXECUTION = 2;

interface Transfer {
  readonly execution: string;
  readonly kind: string;
  parts: Uint8Array[];
  bytes: number;
  touched: number;
}

/**
 * The receiving side of `Courier`: a message that is a part of a larger body is kept (and
 * answered) until its last part, which gives the whole body. A transfer over `maxPayloadBytes`
 * (and the envelope's room), or past what one execution's transfers may hold at once, is dropped
 * and its sender told so (TransferRefusedError); ones whose sender went quiet are swept. Parts
 * for no execution the receiver has are dropped as they come: what a peer sends in parts is held
 * only up to the executions running here.
 */
export class PartsAssembler {
  readonly #transfers = new Map<string, Transfer>();
  /** Bytes held, by execution. */
  readonly #held = new Map<string, number>();
  readonly #maxPayloadBytes: number;

  constructor(maxPayloadBytes: number) {
    this.#maxPayloadBytes = maxPayloadBytes;
  }

  /**
   * The whole body when `msg` completes one (or is not a part); undefined while parts are missing.
   * `execution`: the key of the execution it is for, if the receiver has it.
   */
  take(msg: Msg, execution: string | undefined): Uint8Array | undefined {
    const part = msg.headers?.get(HEADER.part);
    if (!part) return msg.data;
    const [index, count] = part.split('/').map(Number) as [number, number];
    if (execution === undefined) {
      if (index < count - 1) msg.respond();
      return undefined;
    }
    const id = msg.headers!.get(HEADER.transfer);
    let transfer = this.#transfers.get(id);
    if (index === 0) {
      // One body of a kind at a time per execution (its sender's outbox sends them in turn): one
      // begun anew (sent again whole after its link dropped) replaces what came of the last.
      const kind = msg.headers!.get(HEADER.kind);
      for (const [other, each] of this.#transfers) if (each.execution === execution && each.kind === kind) this.#drop(other);
      this.#drop(id);
      this.#transfers.set(id, (transfer = { execution, kind, parts: [], bytes: 0, touched: performance.now() }));
    }
    const limit = this.#maxPayloadBytes + ENVELOPE_BYTES;
    if (transfer && (transfer.bytes + msg.data.length > limit || (this.#held.get(transfer.execution) ?? 0) + msg.data.length > BODIES_PER_EXECUTION * limit)) {
      this.#drop(id);
      const refused = natsHeaders();
      refused.set(HEADER.refused, String(this.#maxPayloadBytes));
      msg.respond(undefined, { headers: refused });
      return undefined;
    }
    if (!transfer || transfer.parts.length !== index || transfer.execution !== execution) {
      this.#drop(id);
      if (index < count - 1) msg.respond();
      return undefined;
    }
    transfer.parts.push(msg.data);
    transfer.bytes += msg.data.length;
    this.#held.set(execution, (this.#held.get(execution) ?? 0) + msg.data.length);
    transfer.touched = performance.now();
    if (index < count - 1) {
      msg.respond();
      return undefined;
    }
    this.#drop(id);
    return Buffer.concat(transfer.parts, transfer.bytes);
  }

  /** Forget transfers not touched for `idleMs`. */
  sweep(idleMs: number): void {
    const before = performance.now() - idleMs;
    for (const [id, transfer] of this.#transfers) if (transfer.touched < before) this.#drop(id);
  }

  #drop(id: string): void {
    const transfer = this.#transfers.get(id);
    if (!transfer) return;
    this.#transfers.delete(id);
    const left = (this.#held.get(transfer.execution) ?? 0) - transfer.bytes;
    if (left > 0) this.#held.set(transfer.execution, left);
    else this.#held.delete(transfer.execution);
  }
}
