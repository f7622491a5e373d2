import type { Status } from '@nats-io/transport-node';
import { LOGIN_REFUSED, messageOf, refusedAnswer, type NatsConnectionOptions } from '../shared/connection.js';
import { serverProblem } from '../shared/server-problem.js';

const CODE = 'KB_PLUGIN_WORKER_CONNECTION';

/**
 * What a worker says (a process warning, on stderr unless the process handles warnings) about its
 * connection while it serves: that it dropped, that the server refuses its login or cannot give it
 * the pool's stream, and that it is back. A worker that takes no tasks for an hour must not look
 * like an idle one to whoever reads its log. Each is said once per spell, not at every retry.
 */
export class ConnectionNotices {
  readonly #workerId: string;
  readonly #connection: NatsConnectionOptions;
  #down = false;
  #loginRefused = false;
  #streamFailing = false;
  #answersRefusedSaid = false;

  readonly #server: () => string;

  /** `server`: the server connected to now. */
  constructor(workerId: string, connection: NatsConnectionOptions, server: () => string) {
    this.#workerId = workerId;
    this.#connection = connection;
    this.#server = server;
  }

  /** A status of the connection (nats.js `status()`); `closing`: the worker closes it (its drops are no news). */
  take(status: Status, closing: boolean): void {
    this.#answersRefused(status);
    if (closing) return;
    if (status.type === 'disconnect' && !this.#down) {
      this.#down = true;
      this.#say(`lost its connection to the NATS server (${status.server}); it reconnects, and takes no tasks until then`);
    } else if (status.type === 'error' && this.#down && !this.#loginRefused && LOGIN_REFUSED.test(messageOf(status.error))) {
      this.#loginRefused = true;
      this.#say(`is refused by the NATS server as it reconnects (${messageOf(status.error)}); it keeps trying: check the server's users and this worker's credentials`);
    } else if (status.type === 'reconnect' && this.#down) {
      this.#down = this.#loginRefused = false;
      this.#say(`is connected to the NATS server again (${status.server})`);
    }
  }

  /** The pool's stream or consumer could not be made or read (a server back without JetStream). */
  streamFailed(error: unknown): void {
    if (this.#streamFailing || this.#down) return;
    this.#streamFailing = true;
    this.#say(`takes no tasks: ${serverProblem('it', this.#connection, error, this.#server()).message}; it tries again`);
  }

  /** The pool's stream and consumer are there (again). */
  streamReady(): void {
    if (!this.#streamFailing) return;
    this.#streamFailing = false;
    this.#say("can use the pool's stream again and takes tasks");
  }

  /**
   * The server refused an answer of this worker's to a host's request (a part of a large input, a
   * call's reply): its user lacks `allow_responses`. Said once; the host fails what waits for it.
   */
  #answersRefused(status: Status): void {
    if (this.#answersRefusedSaid) return;
    const refused = refusedAnswer(status);
    if (!refused) return;
    this.#answersRefusedSaid = true;
    process.emitWarning(
      `Worker ${this.#workerId} cannot answer the hosts' requests (a part of a large input, a call's reply): its NATS user may not publish to their inboxes (${refused.message}); ` +
        'give it allow_responses (docs/backends/queue.md, "Security")',
      { code: 'KB_PLUGIN_WORKER_NOT_PERMITTED' },
    );
  }

  #say(what: string): void {
    process.emitWarning(`Worker ${this.#workerId} ${what}`, { code: CODE });
  }
}
