import { ValidationError } from '@kb-labs/plugin-execution-core';
import { HELD_OUTPUT_BYTES, type Courier, type OutputTally } from '../shared/courier.js';
import { TransferRefusedError } from '../shared/transfer-refused.js';
import { encodedAtLeast } from '../shared/encoded-size.js';
import { encode, formatBytes, namedAs, type Kind, type WorkerIdentity } from '../shared/wire.js';

/**
 * What one execution on a worker sends its caller besides its result, in the order made: logs,
 * events, calls. A large message goes in parts, and what follows it waits for it (the result too:
 * `sent`), so nothing overtakes it and nothing is dropped as late. Each message is weighed against
 * the worker's `maxPayloadBytes` here, and against the caller's own limit at its turn.
 */
export class ExecutionOutbox {
  readonly #courier: Courier;
  readonly #caller: string;
  readonly #id: string;
  readonly #maxPayloadBytes: number;
  readonly #worker: WorkerIdentity;
  /** Its log lines and events on the wire, which its result carries (courier.ts, OutputTally). */
  readonly tally: OutputTally = { sent: 0 };
  /** Settles once every message posted so far has been taken (set while a large one is in flight). */
  #sending: Promise<void> | undefined;
  /** Bytes of logs and events posted and not gone yet: a large one in flight and what waits behind it. */
  #waitingBytes = 0;
  readonly #onOutpaced: () => void;

  /** `onOutpaced`: more than HELD_OUTPUT_BYTES of its output would wait (a handler that does not wait for its pace): stop it. */
  /** `worker`: this worker, whose limit an over-limit message names (a host's may be another). */
  constructor(courier: Courier, caller: string, executionId: string, limit: { maxPayloadBytes: number; worker: WorkerIdentity }, onOutpaced: () => void) {
    this.#courier = courier;
    this.#caller = caller;
    this.#id = executionId;
    this.#maxPayloadBytes = limit.maxPayloadBytes;
    this.#worker = limit.worker;
    this.#onOutpaced = onOutpaced;
  }

  /** Settles once what was posted so far has gone (undefined when nothing large is on its way). */
  get sent(): Promise<void> | undefined {
    return this.#sending;
  }

  /**
   * While a large log line or event is on its way (its parts acknowledged one by one by the
   * caller): what the handler's next output waits for (ExecuteOptions.outputPace), so that a
   * handler emitting large events goes at its caller's pace instead of piling them up here.
   */
  get backlog(): Promise<void> | undefined {
    return this.#waitingBytes > 0 ? this.#sending : undefined;
  }

  post(kind: Kind, body: Uint8Array, onRefused?: (refused: TransferRefusedError) => void): void {
    const weight = kind === 'log' || kind === 'event' ? body.length : 0;
    // A runner that cannot be held (in-process) goes on emitting: bounded as the courier bounds what it holds.
    if (weight > 0 && this.#sending && this.#waitingBytes + weight > HELD_OUTPUT_BYTES) return this.#onOutpaced();
    this.#waitingBytes += weight;
    const gone = () => void (this.#waitingBytes -= weight);
    const send = () => {
      const going = this.#courier.post(this.#caller, kind, this.#id, body, { tally: this.tally })?.catch((error: unknown) => {
        if (error instanceof TransferRefusedError) onRefused?.(error);
      });
      if (!going) return gone();
      return going.finally(gone);
    };
    if (this.#sending) return this.#queue(this.#sending.then(send));
    const inParts = send();
    if (inParts) this.#queue(inParts);
  }

  /**
   * An event that cannot go (one too large for the caller to take, or holding what v8's serialiser
   * refuses: shared memory, a Blob on Node 20) is not sent: the caller gets a warning in its place.
   */
  postEvent(event: unknown): void {
    const warning = (why: ValidationError) => encode({ level: 'warn', message: `${why.message}: it was not delivered`, stream: 'logger' }, 'log fields');
    let bytes: Uint8Array;
    try {
      bytes = this.encodeWithin({ type: 'event', event }, 'ctx.emit() event', event);
    } catch (error) {
      return this.post('log', warning(error as ValidationError));
    }
    // Refused by the caller at its turn: the warning goes then, before what was posted after the event.
    this.post('event', bytes, (by) => void this.#courier.post(this.#caller, 'log', this.#id, warning(this.refusedBy('ctx.emit() event', by)), { tally: this.tally }));
  }

  /** The caller's limit, lower than this worker's, refused what this worker sent. */
  refusedBy(what: string, refused: TransferRefusedError): ValidationError {
    return refused.toValidationError(what, "the calling host's limit", `this worker's is ${formatBytes(this.#maxPayloadBytes)}`);
  }

  /**
   * `message` encoded, where `value` is the plugin's part of it (`path`: where that is, in an
   * error's details). Throws what the caller would refuse to assemble, a message over
   * maxPayloadBytes: found before encoding when `value`'s strings and binary data alone are over
   * it (encodedAtLeast), and otherwise once encoded; or what cannot be encoded.
   */
  encodeWithin(message: unknown, what: string, value: unknown, path = what): Uint8Array {
    const atLeast = encodedAtLeast(value);
    if (atLeast > this.#maxPayloadBytes) throw this.#overLimit(atLeast, what, path, 'at least ');
    const bytes = encode(message, what, value);
    if (bytes.length > this.#maxPayloadBytes) throw this.#overLimit(bytes.length, what, path, '');
    return bytes;
  }

  #overLimit(bytes: number, what: string, path: string, atLeast: string): ValidationError {
    const limit = this.#maxPayloadBytes;
    return new ValidationError(`${namedAs(what)} ${atLeast}${formatBytes(bytes, limit)} encoded, over the limit of worker ${this.#worker.id} (${this.#worker.host}) of ${formatBytes(limit, bytes)} (its maxPayloadBytes)`, {
      details: { path, reason: 'too-large', bytes, limit },
    });
  }

  #queue(sending: Promise<void | undefined>): void {
    const tail = sending.then(
      () => undefined,
      () => undefined,
    );
    this.#sending = tail;
    void tail.then(() => {
      if (this.#sending === tail) this.#sending = undefined;
    });
  }
}
