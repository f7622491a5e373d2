import { ValidationError, type ContextDescriptor, type ExecuteOptions } from '@kb-labs/plugin-execution-core';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { performChannelCall } from './channel-calls.js';
import { closeCodeForConnectFailure, closeCodeForProtocolError, readDenial } from './close-codes.js';
import type { ChannelConnection, ConnectionInfo } from './connection-registry.js';
import { HandedMessages } from './handed-message.js';
import { PeerLiveness } from './peer-liveness.js';
import { BINARY_FRAME, encodeFrame, frameText, idOfRefused, parseFrameText, type FrameId, type ParsedClientFrame, type QueuedMessage, type ServerFrame, type WaitingMessage } from './frames.js';
import type { ChannelErrorPhase } from './options.js';
import { runChannelHandler, runWhileQueueFull, type CloseCause, type Outcome, type SessionRuntime } from './session-runtime.js';
import { SocketWriter } from './socket-writer.js';
import { setTimeout } from '@kb-labs/plugin-execution-core/host-kit';

/**
 * One WebSocket connection of a channel: turns connect, each message and disconnect into
 * executions of the channel's handler, queues messages (in order unless the channel allows
 * concurrency), answers with reply/error frames, and performs the handler's `ctx.channel` calls.
 *
 * Lifecycle: connect runs first (messages that arrive meanwhile wait); the connection is registered
 * only once connect accepted. After the socket closes, messages already received still run (unless
 * `abortOnClose`), then disconnect runs, but only if connect had accepted.
 */
export class ChannelSession implements ChannelConnection {
  readonly id: string;
  readonly channel: string;
  readonly info: Readonly<ConnectionInfo>;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  /** Resolves when the server began to close it, or it closed: whichever comes first. */
  readonly closing: Promise<void>;
  /** Resolves when every execution of this connection, disconnect included, has settled. */
  readonly done: Promise<void>;

  readonly #ws: WebSocket;
  readonly #writer: SocketWriter;
  readonly #rt: SessionRuntime;
  readonly #context: ContextDescriptor;
  /** What every execution of the connection is given, but its signal. */
  readonly #hooks: ExecuteOptions;
  /** Aborts connect and message executions. */
  readonly #work = new AbortController();
  /** Aborts the disconnect execution (only a hard stop does). */
  readonly #final = new AbortController();
  readonly #queue: WaitingMessage[] = [];
  /** Its connect and messages handed to the backend and not settled: running, or waiting in the backend's queue. */
  readonly #handed: HandedMessages;
  #running = 0;
  #accepted = false;
  #registered = false;
  #socketClosed = false;
  readonly #liveness = new PeerLiveness();
  #closeCause: CloseCause | undefined;
  /** The code ws closed with for the client's protocol violation, if it did. */
  #protocolCloseCode: number | undefined;
  /** The server's own close, if it closed first: what the disconnect handler is told. */
  #serverClose: { code: number; reason: string } | undefined;
  #connectDone: Promise<void> = Promise.resolve();
  #idleWaiters: Array<() => void> = [];
  #resolveClosed!: () => void;
  #resolveClosing!: () => void;
  #resolveDone!: () => void;

  constructor(ws: WebSocket, info: ConnectionInfo, context: ContextDescriptor, runtime: SessionRuntime) {
    this.#ws = ws;
    this.#writer = new SocketWriter(ws, runtime.limits.maxBufferedBytes, () => this.terminate('backpressure'));
    this.id = info.id;
    this.channel = info.channel;
    this.info = Object.freeze(info);
    this.#rt = runtime;
    this.#context = context;
    this.#hooks = {
      channel: { connectionId: info.id, path: info.path, call: (method, args, ended) => performChannelCall(this, runtime.registry, method, args, ended) },
      ...(runtime.limits.timeoutMs !== undefined ? { timeoutMs: runtime.limits.timeoutMs } : {}),
      ...(runtime.onLog ? { onLog: (entry) => runtime.onLog!(entry, this.info) } : {}),
      ...(runtime.onEvent ? { onEvent: (event) => runtime.onEvent!(event, this.info) } : {}),
    };
    this.#handed = new HandedMessages(runtime.limits.concurrency);
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.closing = new Promise((resolve) => (this.#resolveClosing = resolve));
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  get isOpen(): boolean {
    return this.#ws.readyState === this.#ws.OPEN;
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  get isSocketClosed(): boolean {
    return this.#socketClosed;
  }

  /** `socket`: the one the upgrade came on. */
  start(socket: Duplex): void {
    const ws = this.#ws;
    this.#liveness.watch(socket);
    // A client that ends its side (FIN) without a close: ws ends the socket only once what waits
    // for it is written, which a client that no longer reads never lets happen; nor is it pinged.
    socket.once('end', () => this.#closeWithin());
    ws.on('message', (data: RawData, isBinary: boolean) => this.#onFrame(data, isBinary));
    ws.on('pong', () => this.#liveness.heard());
    // ws ends a client that pings and does not read the pongs (maxPendingAutoPongs): backpressure.
    ws.on('ping', () => ws.readyState === ws.CLOSING && !this.#serverClose && this.#closeCause === undefined && this.terminate('backpressure'));
    // ws closes the connection after the error it reports for a client's protocol violation, with a
    // code the client may never answer (ws then says 1006): the one it sent is kept.
    ws.on('error', (error) => ((this.#closeCause ??= 'protocol'), (this.#protocolCloseCode ??= closeCodeForProtocolError(error))));
    ws.once('close', (code: number, reason: Buffer) => void this.#onClose(code, reason.toString()));
    this.#connectDone = this.#connect();
  }

  sendText(text: string | Buffer): boolean {
    if (!this.#writer.send(text)) return false;
    this.#rt.counters.framesOut++;
    return true;
  }

  drained(ended?: AbortSignal): Promise<boolean> {
    return this.#writer.drained(ended);
  }

  /**
   * Close from the server's side. A client that does not answer the close loses its socket after
   * `closeTimeoutMs`, not after ws's 30 s: till then it would hold a place of `maxConnections`.
   * The disconnect handler is told this code and reason, whatever the client answers (or not).
   */
  close(code = 1000, reason = ''): void {
    const ws = this.#ws;
    if (ws.readyState !== ws.OPEN && ws.readyState !== ws.CONNECTING) return;
    try {
      ws.close(code, reason);
      this.#serverClose = { code, reason };
    } catch {
      // An invalid code or over-long reason from a host call: close anyway, plainly.
      ws.close(1000);
      this.#serverClose = { code: 1000, reason: '' };
    }
    this.#closeWithin();
  }

  /** Closing from now on: a socket not closed within `closeTimeoutMs` is destroyed. */
  #closeWithin(): void {
    this.#resolveClosing();
    setTimeout(() => this.#socketClosed || this.#ws.terminate(), this.#rt.closeTimeoutMs).unref();
  }

  /**
   * Close with a cause the disconnect handler will be told. An unmount also drops the messages
   * that have not started, waiting here or in the backend's queue: their replies could not be
   * delivered, and the disconnect handler would wait behind them.
   */
  closeFor(cause: CloseCause, code: number, reason: string): void {
    // Only a close of its own is the cause. One already closing (its client sent its close or
    // ended its side, or the server closed it on its own) was not ended by this: a client that
    // left first left of its own accord (abortOnClose treats it so), and a server's close keeps
    // what its disconnect handler is told.
    if (this.isOpen) this.#closeCause ??= cause;
    if (cause === 'unmount') {
      this.#queue.length = 0;
      this.#handed.dropWaiting();
    }
    this.close(code, reason);
  }

  /** Destroy the socket without a closing handshake; `cause`: why, when that is what ends the connection (without one, it keeps the cause it had, if any). */
  terminate(cause?: CloseCause): void {
    if (this.#socketClosed) return;
    if (cause) this.#closeCause ??= cause;
    if (cause === 'backpressure') this.#rt.counters.backpressureCloses++;
    if (cause === 'heartbeat-timeout') this.#rt.counters.heartbeatTimeouts++;
    this.#ws.terminate();
  }

  /** One heartbeat tick: terminate a peer that showed no life since the previous one (PeerLiveness), else ping it. */
  heartbeat(): void {
    if (this.#ws.readyState !== this.#ws.OPEN) return;
    if (!this.#liveness.tick()) {
      this.terminate('heartbeat-timeout');
      return;
    }
    this.#ws.ping();
  }

  /** Abort everything still running or queued, disconnect included. */
  hardStop(): void {
    this.#queue.length = 0;
    this.#abortWork();
    this.#final.abort();
  }

  /** Abort connect and every message handed to the backend. */
  #abortWork(): void {
    this.#work.abort();
    this.#handed.abortAll();
  }

  async #connect(): Promise<void> {
    try {
      await this.#runConnect();
    } catch (error) {
      // E.g. a host-provided registry that throws on register: the connection cannot be served.
      this.#accepted = false;
      this.#queue.length = 0;
      this.#report(error, 'connect');
      this.close(1011, 'INTERNAL');
    }
  }

  async #runConnect(): Promise<void> {
    // Handed as a message is: an unmount drops it while it waits in the backend's queue (its
    // connection closed, no ready frame could go, and a disconnect would follow it for nothing).
    const connect = this.#handed.hand(this.#work.signal.aborted);
    const input = { event: 'connect', connectionId: this.id };
    const result = await this.#execute(input, { signal: connect.signal, onStart: connect.started, ...this.#hooks }).finally(() => this.#handed.settled(connect));
    if (connect.dropped) return this.#uncount(result);
    if (!result.ok) {
      this.#queue.length = 0;
      // A client that left while connect ran (abortOnClose) is not a server problem worth reporting; one an unmount stopped is, as for a message.
      if (!(this.#socketClosed && this.#rt.abortOnClose && this.#closeCause !== 'unmount' && result.error.code === 'ABORTED')) this.#report(result.error, 'connect');
      this.close(closeCodeForConnectFailure(result.error.code), result.error.code);
      return;
    }
    const denial = readDenial(result.data);
    if (denial) {
      this.#queue.length = 0;
      this.#rt.counters.denied++;
      this.close(denial.code, denial.reason);
      return;
    }
    this.#accepted = true;
    if (!this.#socketClosed) {
      this.#rt.registry.register(this);
      this.#registered = true;
      if (this.#rt.sendReady) this.#sendFrame({ type: 'ready', connectionId: this.id }, 'send');
    }
    this.#pump();
  }

  #onFrame(raw: RawData, isBinary: boolean): void {
    this.#liveness.heard();
    this.#rt.counters.framesIn++;
    if (this.#ws.readyState !== this.#ws.OPEN) return;
    if (isBinary) return this.#badFrame(BINARY_FRAME);
    const text = frameText(raw);
    const { maxInFlight, concurrency } = this.#rt.limits;
    // Refused before it is read: a full connection costs its client, not the host's event loop.
    if (this.#queue.length + this.#running >= maxInFlight) {
      this.#rt.counters.queueFull++;
      this.#sendError('QUEUE_FULL', `This connection already has ${maxInFlight} message(s) in flight; wait for replies before sending more`, idOfRefused(text));
      return;
    }
    const parsed = parseFrameText(text);
    if (!parsed.ok) return this.#badFrame(parsed);
    if (this.#accepted && this.#queue.length === 0 && this.#running < concurrency) {
      this.#running++;
      void this.#handle({ id: parsed.id, data: parsed.data });
      return;
    }
    this.#queue.push({ id: parsed.id, text });
    this.#pump();
  }

  #badFrame(parsed: Extract<ParsedClientFrame, { ok: false }>): void {
    this.#rt.counters.badFrames++;
    this.#sendError('VALIDATION_ERROR', parsed.message, parsed.replyTo);
  }

  #pump(): void {
    if (!this.#accepted) return;
    const { concurrency } = this.#rt.limits;
    while (this.#running < concurrency && this.#queue.length > 0) {
      const { id, text } = this.#queue.shift()!;
      // Read whole when it came: it parses the same now.
      const parsed = parseFrameText(text);
      this.#running++;
      void this.#handle({ id, data: parsed.ok ? parsed.data : undefined });
    }
    if (this.#running === 0 && this.#queue.length === 0 && this.#idleWaiters.length > 0) {
      for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  async #handle({ id, data }: QueuedMessage): Promise<void> {
    const input = id === undefined ? { event: 'message', connectionId: this.id, data } : { event: 'message', connectionId: this.id, id, data };
    const message = this.#handed.hand(this.#work.signal.aborted);
    let result: Outcome;
    try {
      // Its own properties before the spread: on Node 20 an object literal that begins with a
      // spread and goes on gets a V8 map of its own each time (~1.5 µs, and megamorphic reads).
      result = await this.#execute(input, { signal: message.signal, onStart: message.started, ...this.#hooks });
    } finally {
      this.#handed.settled(message);
    }
    if (message.dropped) this.#uncount(result);
    const replyTo = id ?? null;
    try {
      if (result.ok) {
        if ((id !== undefined || result.data !== undefined) && !this.#sendFrame({ type: 'reply', replyTo, data: result.data ?? null }, 'message')) {
          this.#sendError('VALIDATION_ERROR', 'The handler returned a value that JSON cannot carry', replyTo);
        }
      } else if (!message.dropped && !(this.#socketClosed && this.#rt.abortOnClose && this.#closeCause !== 'unmount' && result.error.code === 'ABORTED')) {
        // (One its client left behind, aborted for that (abortOnClose), is neither a server
        // problem worth reporting nor answerable, as for connect, also when the server only
        // noticed it had gone (heartbeat, backpressure); one an unmount stopped while it ran is.
        // One an unmount dropped before it started is not, as those waiting here.)
        this.#report(result.error, 'message');
        const shown = this.#rt.formatError(result.error, { phase: 'message', channel: this.channel, connectionId: this.id });
        this.#sendError(shown.code, shown.message, replyTo);
      }
    } catch (error) {
      this.#report(error, 'send');
    } finally {
      this.#running--;
      this.#pump();
    }
  }

  async #onClose(code: number, reason: string): Promise<void> {
    this.#socketClosed = true;
    this.#resolveClosing();
    if (this.#registered && this.#rt.registry.get(this.id) === this) this.#rt.registry.unregister(this.id);
    this.#resolveClosed();
    // A client that left, not one the server closed: an unmount gives what runs its timeoutMs.
    if (this.#rt.abortOnClose && this.#closeCause !== 'unmount') {
      this.#queue.length = 0;
      this.#abortWork();
    }
    await this.#connectDone;
    await this.#idle();
    if (this.#accepted) {
      const closed = this.#serverClose ?? { code: (code === 1006 && this.#protocolCloseCode) || code, reason };
      const input = { event: 'disconnect', connectionId: this.id, ...closed, ...(this.#closeCause ? { cause: this.#closeCause } : {}) };
      const result = await this.#disconnect(input);
      if (!result.ok) this.#report(result.error, 'disconnect');
    }
    this.#resolveDone();
  }

  /**
   * The disconnect execution, tried again while the backend's queue is full: when thousands of
   * clients go at once (an unmount, a load balancer's restart) their cleanup must still run, in
   * turn, until the unmount's time is up (a hard stop aborts it).
   */
  async #disconnect(input: Record<string, unknown>): Promise<Outcome> {
    // One execution in the counters, however many tries the backend's full queue took.
    this.#rt.counters.executions++;
    const result = await runWhileQueueFull(this.#rt, this.#context, input, { signal: this.#final.signal, ...this.#hooks });
    if (!result.ok) this.#rt.counters.failedExecutions++;
    return result;
  }

  /** Dropped unrun by an unmount, as a message waiting here is: no execution, and no failure, in the counters. */
  #uncount(result: Outcome): void {
    this.#rt.counters.executions--;
    if (!result.ok) this.#rt.counters.failedExecutions--;
  }

  #idle(): Promise<void> {
    if (this.#running === 0 && (this.#queue.length === 0 || !this.#accepted)) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  async #execute(input: Record<string, unknown>, options: ExecuteOptions): Promise<Outcome> {
    this.#rt.counters.executions++;
    const outcome = await runChannelHandler(this.#rt, this.#context, input, options);
    if (!outcome.ok) this.#rt.counters.failedExecutions++;
    return outcome;
  }

  /** False when the frame cannot be encoded (it is then reported, not sent). */
  #sendFrame(frame: ServerFrame, phase: ChannelErrorPhase): boolean {
    const text = encodeFrame(frame);
    if (text === undefined) {
      this.#rt.reportError(new ValidationError(`A ${frame.type} frame is not JSON-serialisable`), { phase, channel: this.channel, connectionId: this.id });
      return false;
    }
    this.sendText(text);
    return true;
  }

  #sendError(code: string, message: string, replyTo: FrameId | null): void {
    if (this.sendText(JSON.stringify({ type: 'error', code, message, replyTo }))) this.#rt.counters.errorFrames++;
  }

  #report(error: unknown, phase: ChannelErrorPhase): void {
    this.#rt.reportError(error, { phase, channel: this.channel, connectionId: this.id });
  }
}

