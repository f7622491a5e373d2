import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { clearInterval, clearTimeout, LiveMap, monotonicNow, setInterval, setTimeout } from '@kb-labs/plugin-execution-core/backend-kit';
import { inboxPrefixOf } from '../shared/connection.js';
import { PULL_EXPIRES_MS } from '../shared/pool-consumer.js';
import { headersOf } from '../shared/wire.js';

/** A request is over this long after its expiry, whatever happened to it; the watchdog's period too. */
const PULL_GRACE_MS = 2000;
/** Pause after a failed pull (no server, no stream or consumer yet) before the next. */
const RETRY_MS = 500;

/** A task as the worker handles it: its body and headers, and JetStream's acknowledgements. */
export interface TaskMessage {
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
  /** Taken: the server removes it from the work queue. */
  ack(): void;
  /** Not taken: the server gives it to a worker again, at once or after `delayMs`. */
  nak(delayMs?: number): void;
  /** How many times the server has delivered it, this time included. */
  readonly deliveries: number;
  /** Never to be delivered again. */
  term(): void;
}

/**
 * Pulls tasks from the pool's consumer, never more than the worker has free slots for: a task
 * fetched and then left waiting in this process would wait past its acknowledgement window
 * (nats.go#1929) while another worker was idle. Every freed slot tops the pulls up again.
 *
 * JetStream's pull protocol on one subscription for the worker's life. Each request asks the
 * consumer's next-message API for as many tasks as there are free slots not already asked for;
 * `#asked` counts what the requests may still bring. A task brought lowers it; so does the status
 * that ends a request early (408 expired, 409 …), by the `Nats-Pending-Messages` it names, which
 * is why each request has a reply subject of its own (`<inbox>.<n>`). A task that comes when no
 * slot is free (a request the worker had given up on) is handed back at once (`-NAK`): another
 * worker takes it. (Before, a nats.js `fetch()` per freed slot subscribed to a new inbox and
 * unsubscribed after, every time: ~20 % of a worker's CPU and ~15 % of the server's per
 * execution, docs/benchmarks.md.)
 */
export class TaskPuller {
  readonly #nc: NatsConnection;
  readonly #nextSubject: () => Promise<string>;
  readonly #consumerGone: () => void;
  readonly #free: () => number;
  readonly #take: (msg: TaskMessage) => void;
  readonly #inbox: string;
  /** Requests not known to be over: their size and when they were made. */
  readonly #requests = new LiveMap<{ batch: number; at: number }>();
  #subscription: Subscription | undefined;
  /** Tasks the requests in flight may still bring. */
  #asked = 0;
  /** When the server last said anything to the puller (a task, a status). */
  #heard = 0;
  #count = 0;
  #watchdog: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;

  /**
   * `nextSubject` makes sure the stream and consumer exist and gives the consumer's next-message
   * subject; `consumerGone` says it must check them again (the server left requests unanswered).
   */
  constructor(nc: NatsConnection, nextSubject: () => Promise<string>, consumerGone: () => void, free: () => number, take: (msg: TaskMessage) => void) {
    this.#nc = nc;
    this.#inbox = createInbox(inboxPrefixOf(nc));
    this.#nextSubject = nextSubject;
    this.#consumerGone = consumerGone;
    this.#free = free;
    this.#take = take;
  }

  /** Ask for as many tasks as there are free slots not already asked for. */
  topUp(): void {
    if (this.#stopped || this.#retry) return;
    const wanted = this.#free() - this.#asked;
    if (wanted > 0) void this.#pull(wanted);
  }

  /** Listen for the tasks pull requests bring (the first pull does it, if not done before). */
  subscribe(): void {
    this.#subscription ??= this.#nc.subscribe(`${this.#inbox}.*`, { callback: (error, msg) => void (error ?? this.#onMessage(msg)) });
  }

  async #pull(batch: number): Promise<void> {
    const id = String(++this.#count);
    this.#asked += batch;
    this.#requests.set(id, { batch, at: monotonicNow() });
    try {
      const subject = await this.#nextSubject();
      if (this.#stopped || !this.#requests.has(id)) return;
      this.subscribe();
      this.#watchdog ??= setInterval(() => this.#watch(), PULL_GRACE_MS).unref();
      this.#heard = monotonicNow();
      this.#nc.publish(subject, JSON.stringify({ batch, expires: PULL_EXPIRES_MS * 1_000_000 }), { reply: `${this.#inbox}.${id}` });
    } catch {
      this.#end(id);
      this.#retryLater();
    }
  }

  #onMessage(msg: Msg): void {
    this.#heard = monotonicNow();
    // A status, not a task (a task carries the subject it is acknowledged on): its request is over.
    if (!msg.reply) {
      const id = msg.subject.slice(this.#inbox.length + 1);
      const code = headersOf(msg)?.code ?? 0;
      if (code < 400) return;
      const pending = Number(headersOf(msg)?.get('Nats-Pending-Messages'));
      this.#end(id, Number.isInteger(pending) ? pending : undefined);
      // 408: it expired, the usual end of a request that found too few tasks.
      if (code === 408) return this.topUp();
      // Anything else (503 nothing serves the consumer's API, 409 the consumer deleted or too many
      // requests waiting …): check the consumer again, and ask again after a pause, not in a loop.
      this.#consumerGone();
      return this.#retryLater();
    }
    const task = taskMessage(msg);
    this.#asked = Math.max(0, this.#asked - 1);
    if (this.#stopped || this.#free() <= 0) return task.nak();
    this.#take(task);
  }

  /** Request `id` is over, `unfilled` of its tasks never to come (all of them if not known). */
  #end(id: string, unfilled?: number): void {
    const request = this.#requests.get(id);
    if (!request) return;
    this.#requests.delete(id);
    this.#asked = Math.max(0, this.#asked - Math.min(unfilled ?? request.batch, request.batch));
  }

  /**
   * Requests past their expiry are over (filled ones end without a word). If requests are still
   * counted and the server has said nothing since they should have ended, it forgot them (it
   * restarted, the consumer is gone): check the consumer again and ask afresh.
   */
  #watch(): void {
    const now = monotonicNow();
    const over = now - PULL_EXPIRES_MS - PULL_GRACE_MS;
    for (const [id, request] of this.#requests) if (request.at < over) this.#requests.delete(id);
    if (this.#asked > 0 && this.#heard < over) {
      this.#consumerGone();
      this.renew();
    } else if (this.#requests.size === 0 && this.#asked > 0) {
      // Every request is over, so nothing more comes for them.
      this.#asked = 0;
      this.topUp();
    }
  }

  #retryLater(): void {
    if (this.#stopped || this.#retry) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.topUp();
    }, RETRY_MS);
  }

  /** After a reconnection: the server may have forgotten every request (a restart), so ask again. */
  renew(): void {
    this.#requests.clear();
    this.#asked = 0;
    this.topUp();
  }

  /**
   * Take nothing more; tasks delivered after this are handed back (and never acknowledged ones go
   * to another worker). The subscription is drained, not dropped: the server may have given a
   * request of ours a task before it hears that we stopped listening, and a task dropped unanswered
   * would wait out the consumer's ack wait (5 s) while other workers were free. Not awaited: the
   * drain's round trip waits for a link that may be down (closing the connection ends it).
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    clearInterval(this.#watchdog);
    this.#requests.clear();
    this.#asked = 0;
    const subscription = this.#subscription;
    if (subscription && !subscription.isClosed() && !subscription.isDraining()) void subscription.drain().catch(() => undefined);
  }
}

const ACK = '+ACK';
const NAK = '-NAK';
const TERM = '+TERM';

/** JetStream's acknowledgements are replies to the task's own subject; one per task. */
function taskMessage(msg: Msg): TaskMessage {
  let answered = false;
  const answer = (payload: string) => {
    if (answered) return;
    answered = true;
    msg.respond(payload);
  };
  return {
    data: msg.data,
    // Undecodable: read as none, the task is a forgery the worker removes unasked (forgedClaim).
    headers: headersOf(msg),
    deliveries: deliveriesOf(msg.reply ?? ''),
    ack: () => answer(ACK),
    nak: (delayMs) => answer(delayMs ? `${NAK} ${JSON.stringify({ delay: delayMs * 1_000_000 })}` : NAK),
    term: () => answer(TERM),
  };
}

/** The delivery count in a JetStream acknowledgement subject (`$JS.ACK.<stream>.<consumer>.<delivered>.…`, or with a domain and account hash before the stream). */
function deliveriesOf(reply: string): number {
  const tokens = reply.split('.');
  const delivered = Number(tokens.length === 9 ? tokens[4] : tokens.length >= 11 ? tokens[6] : NaN);
  return Number.isInteger(delivered) && delivered > 0 ? delivered : 1;
}
