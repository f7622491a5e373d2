import { randomUUID } from 'node:crypto';
import { type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { LiveMap } from '@kb-labs/plugin-execution-core/backend-kit';
import { courierPartBytes } from './message-size.js';
import { PartsWindow } from './parts-window.js';
import { ReplyInbox } from './reply-inbox.js';
import { HEADER, encode, formatBytes, makeHeaders, type Kind } from './wire.js';
import { SendGate } from './send-gate.js';
import { TransferRefusedError } from './transfer-refused.js';

export { courierPartBytes, maxPayload, partBytes } from './message-size.js';

/**
 * How much of what executions log and emit a courier holds while its connection is down, or while
 * a receiver has not acknowledged what it sent (PACE_BYTES). Beyond it, further log lines and
 * events are dropped (a handler that logs in a tight loop would otherwise grow the worker's memory
 * for as long as that lasts), and their caller is told how many, in their place. Results, calls
 * and everything else are always held.
 */
export const HELD_OUTPUT_BYTES = 16 * 1024 * 1024;

/**
 * How much of what executions log and emit goes to one receiver before it acknowledges it: every
 * this many bytes, one log line or event goes as a request, and what follows waits for its answer
 * (held as in an outage). A receiver slower than its senders (a host whose onLog writes to a slow
 * sink) then has at most this much queued ahead of a heartbeat, and does not take its workers for
 * lost, or they it; nor does its memory fill with their backlog.
 */
const PACE_BYTES = 256 * 1024;
/**
 * And every this many log lines and events, however short: each is a message the receiver takes
 * in its own callback, and 256 KiB of 100-character lines is some 2,000 of them, taken in one turn
 * of a host's event loop (measured: 0.5 s held, a worker's backlog reaching a host that was behind).
 */
const PACE_MESSAGES = 256;
/** How long such an acknowledgement is waited for before what waits goes anyway. */
const PACE_TIMEOUT_MS = 10_000;
/**
 * How many receivers' paces a courier keeps before it lets go of those that wait for no
 * acknowledgement: a worker serves many hosts in its life (each backend instance is a subject of
 * its own), and most of them get fewer than PACE_MESSAGES from it before they are gone.
 */
const PACED_RECEIVERS = 1024;

const DROPPED = 'the connection to the NATS server dropped while this body was being sent';

/**
 * Sends protocol messages, each a kind and an execution id in headers and a body. A body larger
 * than one message (COURIER_PART_BYTES, or the server's `max_payload` if less) goes as a chain of
 * requests, one part each: the receiver answers every part, so a large transfer is flow-controlled
 * (PartsWindow) and a lost receiver is noticed, and the last part's reply is the reply to the whole
 * message.
 */
export class Courier {
  readonly #nc: NatsConnection;
  readonly #caller: string | undefined;
  readonly #events: CourierEvents;
  /** Where the answers to this connection's requests come (the host's task publishes use it too). */
  readonly replies: ReplyInbox;
  /** What single-message bodies may queue on the connection at once (results here, a host's tasks in HostLink). */
  readonly gate: SendGate;
  /** Set while the connection is down (see hold()). */
  #held: Held | undefined;
  /** How many times the connection dropped: what went in one connection reached the server in order, or not at all past a drop. */
  #drops = 0;
  /** Fail the part requests waiting for their answers (see hold()). */
  readonly #partsInFlight = new Set<(error: Error) => void>();
  /** Logs and events posted to each receiver since its last acknowledgement, and the wait for the next (see PACE_BYTES). */
  readonly #paces = new LiveMap<{ sinceAck: number; messagesSinceAck: number; held: Held | undefined }>();

  /** `caller`: a host's own subject, sent with every message (HEADER.reply); a worker sends none. */
  constructor(nc: NatsConnection, caller?: string, events: CourierEvents = {}) {
    this.#nc = nc;
    this.#caller = caller;
    this.#events = events;
    this.replies = new ReplyInbox(nc);
    this.gate = new SendGate(() => nc.flush(), () => this.#partBytes);
  }

  /** Connections made since this one's first (see #drops). */
  get connection(): number {
    return this.#drops;
  }

  /** Whether `body` goes as one message (not in acknowledged parts). */
  fitsOneMessage(body: Uint8Array): boolean {
    return body.length <= this.#partBytes;
  }

  /** The largest body one message carries now: read at each send, as a server reconnected to may allow less (or more) than the first. */
  get #partBytes(): number {
    return courierPartBytes(this.#nc);
  }

  /**
   * The connection dropped: what is sent from now on waits until `resume()`, in order. nats.js
   * drops what is published while it reconnects (its buffer is reset on each connect), which
   * would lose a result that a handler finished during a short outage.
   */
  hold(): void {
    if (this.#held) return;
    this.#drops++;
    this.#held = newHeld("the worker's connection to the NATS server was down");
    // A part sent before the drop, or its answer, is lost with the connection: its body fails now
    // (and is sent again, whole, once the connection is back) instead of at its timeout.
    const lost = new Error(DROPPED);
    for (const fail of [...this.#partsInFlight]) fail(lost);
    // An acknowledgement asked for before the drop will not come: what waits for it goes behind
    // the outage's hold instead, not a PACE_TIMEOUT_MS after the connection is back.
    for (const pace of this.#paces.values()) {
      const waiting = pace.held;
      pace.held = undefined;
      waiting?.open();
    }
  }

  /** The connection is back: what waited goes now, in the order it was sent. */
  resume(): void {
    this.#held?.open();
    this.#held = undefined;
  }

  /**
   * While PACE_BYTES or PACE_MESSAGES of logs and events wait for `subject` (its acknowledgement, or the
   * connection): a promise that settles when they go. The local backend that runs the handler
   * reads no more of its output until then (ExecuteOptions.outputPace), so the handler waits
   * instead of filling HELD_OUTPUT_BYTES.
   */
  outputWaits(subject: string): Promise<void> | undefined {
    return this.#backlog(subject) ? this.#caughtUp(subject) : undefined;
  }

  /** What waits for `subject`, if PACE_BYTES or PACE_MESSAGES or more of output does. */
  #backlog(subject: string): Held | undefined {
    const held = this.#held ?? this.#paces.get(subject)?.held;
    return held && (held.outputBytes >= PACE_BYTES || held.outputMessages >= PACE_MESSAGES) ? held : undefined;
  }

  /**
   * Settles once less than PACE_BYTES waits. A hold that opens sends what it held, and what does
   * not go before the next acknowledgement is asked for waits in the next hold: it is waited for too.
   */
  async #caughtUp(subject: string): Promise<void> {
    for (let held = this.#backlog(subject); held; held = this.#backlog(subject)) {
      await held.until;
      // What the hold kept is sent by reactions to its opening, some queued after this one: let
      // them all run (into the next hold, past the next 256 KiB) before looking again.
      await undefined;
    }
  }

  /**
   * Fire and forget when it fits in one message; a large body resolves once every part was taken.
   * `signal` stops a large body's parts from going (the body is no longer wanted: sent again, say).
   */
  post(subject: string, kind: Kind, executionId: string | undefined, body: Uint8Array, options: PostOptions = {}): Promise<void> | undefined {
    const { timeoutMs = 10_000, signal, tally } = options;
    // Closed under it (a worker closing while one of its tasks asks a caller over a cut link): nothing goes, as when a drop takes it.
    if (this.#nc.isClosed()) return undefined;
    const output = kind === 'log' || kind === 'event';
    const held = this.#held ?? this.#paces.get(subject)?.held;
    if (held && output && body.length <= this.#partBytes) return this.#holdOutput(held, subject, kind, executionId, body, tally);
    if (held) return held.until.then(() => this.post(subject, kind, executionId, body, options));
    if (output && tally) tally.sent++;
    if (body.length > this.#partBytes) return this.#sendParts(subject, kind, executionId, body, timeoutMs, signal, tally).then(() => undefined);
    // A result waits its turn on the connection (SendGate): it is its execution's last message.
    if (kind === 'result' && !options.admitted && this.gate.gates(body.length)) return this.gate.admit(body.length).then(() => this.post(subject, kind, executionId, body, { ...options, admitted: true }));
    const headers = this.#headers(kind, executionId, tally);
    if (output && this.#dueForAck(subject, body.length)) this.#paceOn(subject, this.replies.request(subject, body, { headers, timeout: PACE_TIMEOUT_MS }));
    else this.#nc.publish(subject, body, { headers });
    return undefined;
  }

  /** A result's headers carry its execution's tally as it goes (what went before it is counted by then). */
  #headers(kind: Kind, executionId: string | undefined, tally: OutputTally | undefined): MsgHdrs {
    const headers = makeHeaders(kind, executionId, this.#caller);
    if (kind === 'result' && tally) headers.append(HEADER.outputSent, String(tally.sent));
    return headers;
  }

  /** Counts `bytes` of output to `subject`; true when this one is to be acknowledged (every PACE_BYTES, or PACE_MESSAGES). */
  #dueForAck(subject: string, bytes: number): boolean {
    let pace = this.#paces.get(subject);
    if (!pace) {
      if (this.#paces.size >= PACED_RECEIVERS) this.#forgetUnheldPaces();
      this.#paces.set(subject, (pace = { sinceAck: 0, messagesSinceAck: 0, held: undefined }));
    }
    pace.sinceAck += bytes;
    pace.messagesSinceAck++;
    if (pace.sinceAck < PACE_BYTES && pace.messagesSinceAck < PACE_MESSAGES) return false;
    pace.sinceAck = 0;
    pace.messagesSinceAck = 0;
    return true;
  }

  /** Each forgets less than PACE_BYTES (and PACE_MESSAGES) counted: its next acknowledgement is asked for that much later, once. */
  #forgetUnheldPaces(): void {
    for (const [subject, pace] of this.#paces) if (!pace.held) this.#paces.delete(subject);
  }

  /** Receivers whose pace this courier keeps now (PACED_RECEIVERS). */
  get pacedReceivers(): number {
    return this.#paces.size;
  }

  /** What is posted to `subject` waits for `acknowledged` (answered, refused or timed out), then goes in order. */
  #paceOn(subject: string, acknowledged: Promise<unknown>): void {
    const pace = this.#paces.get(subject)!;
    const held = (pace.held = newHeld('the calling host acknowledged them more slowly than they came (a slow host, or a link cut)', true));
    void acknowledged
      .catch(() => undefined)
      .then(() => {
        pace.held = undefined;
        held.open();
        if (pace.messagesSinceAck === 0) this.#paces.delete(subject);
      });
  }

  /**
   * A log line or event while the connection is down: held, in order with the rest, without its
   * sender waiting for it (as when connected: fire and forget), up to HELD_OUTPUT_BYTES.
   */
  #holdOutput(held: Held, subject: string, kind: 'log' | 'event', executionId: string | undefined, body: Uint8Array, tally: OutputTally | undefined): undefined {
    if (held.outputBytes + body.length > HELD_OUTPUT_BYTES) {
      if (held.paced && kind === 'event' && executionId !== undefined) this.#events.onOutpaced?.(subject, executionId);
      return this.#drop(held, subject, kind, executionId, tally);
    }
    held.outputBytes += body.length;
    held.outputMessages++;
    // A connection closed for good (not made again) makes the publish throw: nothing waits for it.
    held.until.then(() => this.post(subject, kind, executionId, body, { tally })).catch(() => undefined);
    return undefined;
  }

  /**
   * A log line or event over the held bound: counted, and on the first one of its execution a
   * notice is held in its place, which says (once the connection is back) how many were dropped.
   */
  #drop(held: Held, subject: string, kind: 'log' | 'event', executionId: string | undefined, tally: OutputTally | undefined): undefined {
    return this.#count(held, subject, executionId, tally, { log: kind === 'log' ? 1 : 0, event: kind === 'event' ? 1 : 0, why: [held.why] });
  }

  #count(held: Held, subject: string, executionId: string | undefined, tally: OutputTally | undefined, dropped: Dropped): undefined {
    const key = `${subject}\n${executionId ?? ''}`;
    const counted = held.dropped.get(key);
    if (counted) {
      counted.log += dropped.log;
      counted.event += dropped.event;
      for (const why of dropped.why) if (!counted.why.includes(why)) counted.why.push(why);
      return undefined;
    }
    held.dropped.set(key, dropped);
    held.until
      .then(() => {
        // Another hold began while this one lasted (the connection dropped while it waited for an
        // acknowledgement): what it held went into that one, and so does its count, said once by
        // that hold's notice (which would not fit in it either).
        const next = this.#held ?? this.#paces.get(subject)?.held;
        if (next && next !== held) return this.#count(next, subject, executionId, tally, dropped);
        const message =
          `${dropped.log} log line(s) and ${dropped.event} event(s) of this execution were not delivered: ${dropped.why.join(', then ')}, ` +
          `and the worker holds at most ${formatBytes(HELD_OUTPUT_BYTES)} of logs and events meanwhile`;
        return this.post(subject, 'log', executionId, encode({ level: 'warn', message, stream: 'logger' }, 'log fields'), { tally });
      })
      .catch(() => undefined);
    return undefined;
  }

  /** A request; rejects as `nc.request` does (no responders, timeout; see ReplyInbox). */
  request(subject: string, kind: Kind, executionId: string | undefined, body: Uint8Array, timeoutMs: number): Promise<Msg> {
    if (this.#held) return this.#held.until.then(() => this.request(subject, kind, executionId, body, timeoutMs));
    if (body.length <= this.#partBytes) return this.replies.request(subject, body, { headers: makeHeaders(kind, executionId, this.#caller), timeout: timeoutMs });
    return this.#sendParts(subject, kind, executionId, body, timeoutMs);
  }

  /** The parts of `body` in order, as many waiting for their answers at once as the link carries (PartsWindow). */
  async #sendParts(subject: string, kind: Kind, executionId: string | undefined, body: Uint8Array, timeoutMs: number, signal?: AbortSignal, tally?: OutputTally): Promise<Msg> {
    const transfer = randomUUID();
    const size = this.#partBytes;
    const count = Math.ceil(body.length / size);
    const window = new PartsWindow(size);
    const waiting: Array<Promise<Msg>> = [];
    let next = 0;
    let reply!: Msg;
    for (let answered = 0; answered < count; answered++) {
      while (next < count && window.allows(next - answered)) {
        // Dropped between two parts (the drop told before the next part was asked for): that part
        // would wait its whole timeout for an answer nats.js never gets (a request is not failed by
        // a disconnect). The body goes again, whole, once the connection is back.
        if (this.#held) throw new Error(DROPPED);
        signal?.throwIfAborted();
        const headers = this.#headers(kind, executionId, tally);
        headers.append(HEADER.part, `${next}/${count}`);
        headers.append(HEADER.transfer, transfer);
        const part = body.subarray(next * size, Math.min(body.length, (next + 1) * size));
        const answer = this.#partAnswered(this.replies.request(subject, part, { headers, timeout: timeoutMs }));
        // Those still waiting when an earlier one fails are not awaited.
        answer.catch(() => undefined);
        waiting.push(answer);
        window.sent();
        next++;
      }
      reply = await waiting[answered]!;
      window.answered(Math.min(size, body.length - answered * size));
      this.#events.onPartTaken?.(subject);
      const refused = reply.headers?.get(HEADER.refused);
      if (refused) {
        // Refused, not lost: the receiver knows it did not take it (and its sender says so in its place).
        if (tally && kind !== 'result') tally.sent--;
        throw new TransferRefusedError(Number(refused), body.length);
      }
    }
    return reply;
  }

  /** A part's answer, or a rejection as soon as the connection drops (hold()). */
  #partAnswered(request: Promise<Msg>): Promise<Msg> {
    let fail!: (error: Error) => void;
    const dropped = new Promise<never>((_, reject) => (fail = reject));
    this.#partsInFlight.add(fail);
    request.catch(() => undefined);
    return Promise.race([request, dropped]).finally(() => this.#partsInFlight.delete(fail));
  }
}

function newHeld(why: string, paced = false): Held {
  let open!: () => void;
  const until = new Promise<void>((resolve) => (open = resolve));
  return { until, open, why, paced, outputBytes: 0, outputMessages: 0, dropped: new Map() };
}

/** How many of one execution's log lines and events went on the wire (see PostOptions). */
export interface OutputTally {
  sent: number;
}

export interface PostOptions {
  /** How long each part of a large body waits for its answer. */
  timeoutMs?: number;
  /** Stops a large body's parts from going. */
  signal?: AbortSignal;
  /** Let through the connection's SendGate already. */
  admitted?: boolean;
  /**
   * The execution's tally: a log line or event counts once it goes on the wire (a held one when
   * it goes, a dropped one never, a refused one is taken off again), and a result carries the
   * count as it goes (HEADER.outputSent), so that its receiver can tell how many were lost on the
   * way (a reset takes what was on the wire, not yet at the server).
   */
  tally?: OutputTally;
}

/** What a courier tells its owner. */
export interface CourierEvents {
  /** The receiver on `subject` answered a part (it is there, however slow the link). */
  onPartTaken?(subject: string): void;
  /**
   * An event of `executionId` found HELD_OUTPUT_BYTES waiting for `subject` to acknowledge what
   * came before (not for the connection): it was dropped, as what follows is. (A log line there is
   * only counted: lost diagnostics are said in a notice, lost events fail the execution.)
   */
  onOutpaced?(subject: string, executionId: string): void;
}

/** Log lines and events of one execution dropped over the held bound, and why they waited. */
interface Dropped {
  log: number;
  event: number;
  why: string[];
}

interface Held {
  until: Promise<void>;
  open: () => void;
  /** Why what is sent waits (said in the notice of what was dropped). */
  why: string;
  /** It waits for the receiver's acknowledgement (PACE_BYTES), not for the connection. */
  paced: boolean;
  /** Bytes of logs and events held. */
  outputBytes: number;
  /** Log lines and events held. */
  outputMessages: number;
  /** What was dropped over the bound, by caller subject and execution id. */
  dropped: Map<string, Dropped>;
}
