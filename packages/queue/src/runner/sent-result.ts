import type { Courier, OutputTally } from '../shared/courier.js';
import type { Watched } from './caller-watch.js';

/** How long the post of a result waits (a large one goes as parts, each answered). */
const RESULT_TIMEOUT_MS = 10_000;
/** How many times a result its caller did not get goes again (see resendResult). */
const RESULT_RESENDS = 3;

/**
 * An execution's result, and how it is posted to its caller (send()). One that went as one
 * message is kept until its caller is known to have it (the next
 * heartbeat's answer, CallerWatch): what the watch holds of an execution once it has ended, in
 * place of the execution. Nothing else of it (its task message, its signal, its outbox) stays for
 * that heartbeat, long enough for the garbage collector to carry it into the old generation: held
 * whole, it doubled a worker's collection work per execution (docs/benchmarks.md).
 */
export class SentResult implements Watched {
  readonly id: string;
  /** The worker's connection (Courier.connection) it went on; undefined until it went, and while it goes again. */
  resultSentOn: number | undefined;
  readonly #courier: Courier;
  readonly #caller: string;
  readonly #bytes: Uint8Array;
  readonly #tally: OutputTally;
  #resends = 0;

  /** `bytes`, the result of execution `id` for `caller`, sent by send(). */
  constructor(id: string, courier: Courier, caller: string, bytes: Uint8Array, tally: OutputTally) {
    this.id = id;
    this.#courier = courier;
    this.#caller = caller;
    this.#bytes = bytes;
    this.#tally = tally;
  }

  /** Ended already: nothing runs to stop. */
  orphan(): void {}

  /**
   * It went on a connection that dropped since, and a heartbeat's answer still counts it as
   * running: the drop took it (published, not yet at the server), so it goes again. False once it
   * went RESULT_RESENDS times: the caller reports this worker lost.
   */
  resendResult(): boolean {
    if (this.#resends >= RESULT_RESENDS) return false;
    this.#resends++;
    this.resultSentOn = undefined;
    void this.send().catch(() => undefined);
    return true;
  }

  /**
   * Post it to its caller. Rejects when a large one (in parts) does not get through: its caller is
   * gone, its limit is lower than this worker's (TransferRefusedError), or the connection dropped under it.
   */
  async send(): Promise<void> {
    const courier = this.#courier;
    // Undefined (sent at once) or a promise (held while the connection is down, or in parts).
    await courier.post(this.#caller, 'result', this.id, this.#bytes, { timeoutMs: RESULT_TIMEOUT_MS, tally: this.#tally });
    this.resultSentOn = courier.connection;
  }
}
