import { headers as natsHeaders, type Msg } from '@nats-io/transport-node';
import { HEADER, type WireHeaders } from './wire.js';
import { monotonicNow } from '@kb-labs/plugin-execution-core/backend-kit';

/** Room over a receiver's maxPayloadBytes for the envelope around a body (the result's meta, a log line's fields). */
const ENVELOPE_BYTES = 64 * 1024;

/**
 * How a receiver holds what its senders send in parts. `lane`: of a message kind, the one body at
 * a time its sender sends of it for an execution (a body begun anew in a lane is the last one sent
 * again whole, after its link dropped: it takes the place of what came of it), so that an
 * execution holds at most one body per lane; undefined: bodies of that kind may come side by side
 * (a host's replies to several platform calls at once).
 */
export interface PartsPolicy {
  lane(kind: string): string | undefined;
  /** How many bodies of a kind without a lane `execution` may have on their way at once; undefined: no bound. */
  most?(kind: string, execution: string): number;
}

interface Transfer {
  readonly execution: string;
  readonly lane: string | undefined;
  parts: Uint8Array[];
  bytes: number;
  touched: number;
}

/**
 * The receiving side of `Courier`: a message that is a part of a larger body is kept (and
 * answered) until its last part, which gives the whole body. A transfer over `maxPayloadBytes`
 * (and the envelope's room) is dropped and its sender told so (TransferRefusedError); ones whose
 * sender went quiet are swept. Parts for no execution the receiver has are dropped as they come,
 * and an execution's lanes (PartsPolicy) hold one body each: what a peer sends in parts is held
 * only up to the executions running here.
 */
export class PartsAssembler {
  readonly #transfers = new Map<string, Transfer>();
  readonly #maxPayloadBytes: number;
  readonly #policy: PartsPolicy;

  constructor(maxPayloadBytes: number, policy: PartsPolicy) {
    this.#maxPayloadBytes = maxPayloadBytes;
    this.#policy = policy;
  }

  /**
   * The whole body when `msg` completes one (or is not a part); undefined while parts are missing,
   * or when `msg` was dropped. Each part but the one that completes a body is answered here.
   * `headers`: its headers (readHeaders). `execution`: the key of the execution it is for, if the receiver has it.
   */
  take(msg: Msg, headers: WireHeaders, execution: string | undefined): Uint8Array | undefined {
    const part = headers.part;
    if (!part) return msg.data;
    const [index, count] = part.split('/').map(Number) as [number, number];
    if (execution === undefined) return dropped(msg);
    const id = headers.transfer ?? '';
    let transfer = this.#transfers.get(id);
    if (index === 0) {
      const kind = headers.kind ?? '';
      const lane = this.#policy.lane(kind);
      if (lane === undefined && !this.#makeRoom(execution, this.#policy.most?.(kind, execution) ?? Infinity)) {
        // A body the execution waits for none of (a peer's flood): dropped, as a stray part is.
        this.#transfers.delete(id);
        return dropped(msg);
      }
      if (lane !== undefined) for (const [other, each] of this.#transfers) if (each.execution === execution && each.lane === lane) this.#transfers.delete(other);
      this.#transfers.set(id, (transfer = { execution, lane, parts: [], bytes: 0, touched: monotonicNow() }));
    }
    if (transfer && transfer.bytes + msg.data.length > this.#maxPayloadBytes + ENVELOPE_BYTES) {
      this.#transfers.delete(id);
      const refused = natsHeaders();
      refused.append(HEADER.refused, String(this.#maxPayloadBytes));
      msg.respond(undefined, { headers: refused });
      return undefined;
    }
    if (!transfer || transfer.parts.length !== index || transfer.execution !== execution) {
      this.#transfers.delete(id);
      return dropped(msg);
    }
    transfer.parts.push(msg.data);
    transfer.bytes += msg.data.length;
    transfer.touched = monotonicNow();
    if (index < count - 1) {
      msg.respond();
      return undefined;
    }
    this.#transfers.delete(id);
    return Buffer.concat(transfer.parts, transfer.bytes);
  }

  /**
   * Room for one more body without a lane for `execution`, of `most` side by side: the oldest
   * go (one cut off by a drop of the link, whose call has failed since); false when `most` is 0.
   */
  #makeRoom(execution: string, most: number): boolean {
    if (most <= 0) return false;
    const unlaned = [...this.#transfers].filter(([, each]) => each.execution === execution && each.lane === undefined);
    for (const [other] of unlaned.slice(0, Math.max(0, unlaned.length - most + 1))) this.#transfers.delete(other);
    return true;
  }

  /** Forget transfers not touched for `idleMs`. */
  sweep(idleMs: number): void {
    const before = monotonicNow() - idleMs;
    for (const [id, transfer] of this.#transfers) if (transfer.touched < before) this.#transfers.delete(id);
  }
}

/**
 * A part dropped (for no execution the receiver has, of no transfer it holds, or its flood): still
 * answered, the last one too, as its sender waits for that answer (a worker's copy of a result its
 * host took already, sent again after a drop took the answer to its last part, waited its whole
 * part timeout for it, its slot taken meanwhile).
 */
function dropped(msg: Msg): undefined {
  msg.respond();
  return undefined;
}

/**
 * Whether `PartsAssembler.take` answered `headers`' message itself: a part that did not complete a
 * body (`body`, what take returned; its sender waits for that answer to send more, or in vain).
 * The last part of a body, or a whole message, is its receiver's to answer once it has handled the body.
 */
export function answeredByTake(headers: WireHeaders, body: Uint8Array | undefined): boolean {
  return headers.part !== undefined && body === undefined;
}

/**
 * A host's: what a worker sends of an execution comes in two lanes, its outbox (log lines, events,
 * platform calls, one after another) and its result (sent once that outbox is empty, and again
 * whole if its link dropped): two bodies at most. A peer with a worker's credentials (a plugin on a
 * worker-pool worker may read them) gets no more held than that.
 */
export const HOST_PARTS: PartsPolicy = { lane: (kind) => (kind === 'result' ? 'result' : 'outbox') };

/**
 * A worker's: its caller sends an execution's input once (again whole if its link dropped), and
 * its replies to the handler's platform calls side by side, no more than the calls it has in
 * flight (`callsPending`, by execution key): a peer with a host's credentials sending reply after
 * reply for one execution had each held, up to its limit, until its sweep.
 */
export function workerParts(callsPending: (execution: string) => number): PartsPolicy {
  return { lane: (kind) => (kind === 'input' ? 'input' : undefined), most: (_kind, execution) => callsPending(execution) };
}
