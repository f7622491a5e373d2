import { monotonicNow } from '@kb-labs/plugin-execution-core/backend-kit';

const CODE = 'KB_PLUGIN_PEER_FORGED';
/** At most one warning this often: a peer that forges in a loop is one line a minute, not one per message. */
const SAID_EVERY_MS = 60_000;

/**
 * What reached a worker that no host or worker of the pool sends: a task whose headers no host
 * writes (removed unasked: forgedClaim), a message to this worker whose headers or body cannot be
 * read. Each is dropped; an operator is told by a process warning with the count, the first at
 * once and then at most one a minute (what came meanwhile said with the next one), so that a
 * forger on the pool's account is seen without the worker's log filling with it.
 */
export class PeerForgeries {
  readonly #workerId: string;
  #tasks = 0;
  #messages = 0;
  #saidAt = Number.NEGATIVE_INFINITY;

  constructor(workerId: string) {
    this.#workerId = workerId;
  }

  /** A task forged: removed from the stream (terminated), unasked. */
  task(msg: { term(): void }): void {
    msg.term();
    this.#tasks++;
    this.#sayIfDue();
  }

  /** A message to this worker that cannot be read: dropped. */
  message(): void {
    this.#messages++;
    this.#sayIfDue();
  }

  #sayIfDue(now = monotonicNow()): void {
    if (now - this.#saidAt < SAID_EVERY_MS) return;
    const since = Number.isFinite(this.#saidAt) ? ' since its last such warning' : '';
    this.#saidAt = now;
    process.emitWarning(
      `Worker ${this.#workerId} dropped ${this.#tasks} task(s) whose headers no host of the pool writes and ${this.#messages} message(s) to it it could not read${since}: ` +
        "a client on the pool's account that is no host or worker of this version sends them (said at most once a minute)",
      { code: CODE },
    );
    this.#tasks = 0;
    this.#messages = 0;
  }
}
