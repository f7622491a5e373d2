import { ValidationError } from '@kb-labs/plugin-execution-core';
import { formatBytes, namedAs } from './wire.js';

/**
 * The receiver took no more of a body: it is over the receiver's `maxPayloadBytes`. Each side may
 * set its own limit (a host of 20 MiB, workers of 8), so the sender learns it here, at the part
 * that passed it, instead of waiting for an answer that never comes.
 */
export class TransferRefusedError extends Error {
  override name = 'TransferRefusedError';
  constructor(
    /** The receiver's maxPayloadBytes. */
    readonly limit: number,
    /** The whole body's size. */
    readonly bytes: number,
  ) {
    super(`the receiver takes at most ${limit} bytes (its maxPayloadBytes), and this body has ${bytes}`);
  }

  /**
   * What the sender reports, on either side: the `what` (`input`, `handler result` …) and its
   * size, over `whose` limit (`the calling host's limit`, `the limit of worker w-1 (box)`), beside
   * the sender's own (`ours`), then `advice`.
   */
  toValidationError(what: string, whose: string, ours: string, advice = ''): ValidationError {
    return new ValidationError(`${namedAs(what)} ${formatBytes(this.bytes, this.limit)} encoded, over ${whose} of ${formatBytes(this.limit, this.bytes)} (its maxPayloadBytes; ${ours})${advice}`, {
      details: { path: what.split(' ').pop()!, reason: 'too-large', bytes: this.bytes, limit: this.limit },
    });
  }
}
