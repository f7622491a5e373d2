import type { Status } from '@nats-io/transport-node';
import { LOGIN_REFUSED, messageOf, refusedAnswer, STREAM_SILENT, type NatsConnectionOptions } from '../shared/connection.js';
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
  /** The failure was said (its words wait for a ping's answer): only then is the recovery news. */
  #streamFailureSaid = false;
  /** A read of the stream timed out once since it last answered: the next one that does is a spell. */
  #timedOutOnce = false;
  /** Counts the connection's drops and returns: a read begun before the last one failed for the old link's sake. */
  #linkEpoch = 0;
  #answersRefusedSaid = false;

  readonly #server: () => string;
  readonly #serverAnswers: () => Promise<boolean>;

  /** `server`: the server connected to now; `serverAnswers`: whether it answers a ping within a second. */
  constructor(workerId: string, connection: NatsConnectionOptions, server: () => string, serverAnswers: () => Promise<boolean>) {
    this.#workerId = workerId;
    this.#connection = connection;
    this.#server = server;
    this.#serverAnswers = serverAnswers;
  }

  /** A status of the connection (nats.js `status()`); `closing`: the worker closes it (its drops are no news). */
  take(status: Status, closing: boolean): void {
    this.#answersRefused(status);
    if (closing) return;
    if (status.type === 'disconnect' || status.type === 'reconnect') {
      this.#linkEpoch++;
      this.#timedOutOnce = false;
    }
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

  /** Which link a read of the stream begins on: give it to streamFailed() if the read fails. */
  get linkEpoch(): number {
    return this.#linkEpoch;
  }

  /**
   * The pool's stream or consumer could not be made or read (a server back without JetStream), by
   * a read begun on link `epoch` (linkEpoch): one begun before the connection dropped or came back
   * (nats.js keeps a request across a reconnection, and it times out after) says nothing.
   */
  streamFailed(error: unknown, epoch = this.#linkEpoch): void {
    if (this.#streamFailing || this.#down || epoch !== this.#linkEpoch) return;
    // One read that timed out is no spell yet: one made while the link was cut (before nats.js
    // noticed) times out after the reconnection, and a busy server may answer one late. The
    // worker reads again at its next pull; a stream that is silent times that one out too.
    if (STREAM_SILENT.test(messageOf(error)) && !this.#timedOutOnce) {
      this.#timedOutOnce = true;
      return;
    }
    this.#streamFailing = true;
    void this.#whyStreamFailed(error).then((why) => {
      if (!this.#streamFailing) return;
      // The link dropped while a ping was asked (or sooner): not said, so not failing either, or
      // a failure that goes on once the connection is back would never be said.
      if (this.#down || epoch !== this.#linkEpoch) {
        this.#streamFailing = false;
        return;
      }
      this.#streamFailureSaid = true;
      this.#say(`takes no tasks: ${why}; it tries again`);
    });
  }

  /**
   * A stream read that timed out says the stream is silent only if the server answers a ping: a
   * link cut without a word (no reset) looks connected to nats.js until two of its pings go
   * unanswered (10-15 s: connection.ts), and a stream read may time out first.
   */
  async #whyStreamFailed(error: unknown): Promise<string> {
    const server = this.#server();
    if (STREAM_SILENT.test(messageOf(error)) && !(await this.#serverAnswers())) {
      return `the NATS server (${server}) does not answer it (the pool's stream timed out, and a ping went unanswered for a second): its link to the server may be cut`;
    }
    return serverProblem('it', this.#connection, error, server).message;
  }

  /** The pool's stream and consumer are there (again). */
  streamReady(): void {
    this.#timedOutOnce = false;
    if (!this.#streamFailing) return;
    this.#streamFailing = false;
    if (!this.#streamFailureSaid) return;
    this.#streamFailureSaid = false;
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
