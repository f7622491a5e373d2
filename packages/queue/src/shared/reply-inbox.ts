import { RequestError, TimeoutError, createInbox, errors, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { clearTimeout, LiveMap, setTimeout } from '@kb-labs/plugin-execution-core/backend-kit';
import { inboxPrefixOf, refusedPublish } from './connection.js';
import { headersOf } from './wire.js';

/**
 * Request and reply on one subscription for the life of a connection: each request publishes
 * with a reply subject of its own under this inbox and waits for the first message there.
 *
 * nats.js's `request()` does the same, but builds an Error, with its stack, for every request it
 * completes (to reject a promise that has already resolved): ~10 µs per request, on the host's
 * publish of every task and on every worker's claim, a sixth of the queue's throughput
 * (docs/benchmarks.md). Failures reject the way nats.js's do, with its own public error classes:
 * a `RequestError` whose `isNoResponders()` says nobody listens on the subject, a `TimeoutError`
 * when no answer came in time.
 */
export class ReplyInbox {
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #waiting = new LiveMap<Waiting>();
  #count = 0;
  /** The server refused the inbox's subscription (not permitted): no answer can ever come. */
  #refused: Error | undefined;

  constructor(nc: NatsConnection) {
    this.#nc = nc;
    this.#prefix = createInbox(inboxPrefixOf(nc));
    nc.subscribe(`${this.#prefix}.*`, { callback: (error, msg) => (error ? this.#refuse(error) : this.#answer(msg)) });
    void nc.closed().then(() => this.#failAll(new errors.ClosedConnectionError()));
    void this.#watchRefusals(nc);
  }

  /**
   * The server refuses a publish this connection's user may not make (its permissions) with an
   * error naming the subject, not an answer: the requests to that subject fail with it at once,
   * as nats.js's own requests do, instead of waiting out their timeouts.
   */
  async #watchRefusals(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      const refused = refusedPublish(status);
      if (!refused) continue;
      for (const [token, waiting] of [...this.#waiting]) {
        if (waiting.subject === refused.subject) this.#settle(token)!.reject(new RequestError(refused.error.message, { cause: refused.error }));
      }
    }
  }

  /** Publish `body` to `subject` and resolve with the first answer; rejects as `nc.request` does. */
  request(subject: string, body: Uint8Array, options: { headers?: MsgHdrs; timeout: number }): Promise<Msg> {
    if (this.#refused) return Promise.reject(this.#refused);
    const token = (this.#count++).toString(36);
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(token);
        reject(new TimeoutError());
      }, options.timeout);
      this.#waiting.set(token, { resolve, reject, timer, subject });
      try {
        this.#nc.publish(subject, body, { reply: `${this.#prefix}.${token}`, ...(options.headers ? { headers: options.headers } : {}) });
      } catch (error) {
        // Closed, draining, or over the server's max_payload: nothing was sent.
        this.#settle(token);
        reject(error);
      }
    });
  }

  #answer(msg: Msg): void {
    const waiting = this.#settle(msg.subject.slice(this.#prefix.length + 1));
    if (!waiting) return;
    // The server's status when nobody subscribes to the subject (nats.js asks for it at connect).
    if (msg.data.length === 0 && headersOf(msg)?.code === 503) {
      const cause = new errors.NoRespondersError(waiting.subject);
      waiting.reject(new RequestError(cause.message, { cause }));
    } else waiting.resolve(msg);
  }

  /** The request of `token`, no longer waiting (answered, failed or timed out): undefined if it was not. */
  #settle(token: string): Waiting | undefined {
    const waiting = this.#waiting.get(token);
    if (!waiting) return undefined;
    this.#waiting.delete(token);
    clearTimeout(waiting.timer);
    return waiting;
  }

  #refuse(error: Error): void {
    this.#refused = error;
    this.#failAll(error);
  }

  #failAll(error: Error): void {
    for (const token of [...this.#waiting.keys()]) this.#settle(token)!.reject(error);
  }
}

interface Waiting {
  resolve(msg: Msg): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
  subject: string;
}
