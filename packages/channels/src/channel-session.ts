import {
  ValidationError,
  toHandlerError,
  type ChannelBridge,
  type ContextDescriptor,
  type ExecuteOptions,
  type ExecutionError,
  type IExecutionBackend,
} from '@kb-labs/plugin-execution-core';
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import { encodePush, type ChannelConnection, type ConnectionInfo, type ConnectionRegistry } from './connection-registry.js';
import { encodeFrame, parseClientFrame, type FrameId, type ServerFrame } from './frames.js';
import type { ChannelErrorInfo, ChannelErrorPhase, MountWebSocketChannelsOptions } from './options.js';

/** Why the server ended a connection on its own, told to the disconnect handler as `cause`. */
export type CloseCause = 'heartbeat-timeout' | 'backpressure' | 'unmount';

/** The limits that apply to one channel, after manifest values and host defaults are merged. */
export interface ChannelLimits {
  concurrency: number;
  maxInFlight: number;
  timeoutMs: number | undefined;
  maxBufferedBytes: number;
}

/** Counters a mount keeps; sessions bump them. */
export interface MountCounters {
  framesIn: number;
  framesOut: number;
  errorFrames: number;
  badFrames: number;
  queueFull: number;
  executions: number;
  failedExecutions: number;
  /** Connections whose connect handler refused them. */
  denied: number;
  heartbeatTimeouts: number;
  backpressureCloses: number;
}

/** What a session needs from its mount. */
export interface SessionRuntime {
  backend: IExecutionBackend;
  registry: ConnectionRegistry;
  pluginId: string;
  handlerId: string;
  limits: ChannelLimits;
  counters: MountCounters;
  sendReady: boolean;
  abortOnClose: boolean;
  formatError: (error: ExecutionError, info: ChannelErrorInfo) => { code: string; message: string };
  reportError: (error: unknown, info: ChannelErrorInfo) => void;
  onLog: MountWebSocketChannelsOptions['onLog'];
  onEvent: MountWebSocketChannelsOptions['onEvent'];
}

type Outcome = { ok: true; data: unknown } | { ok: false; error: ExecutionError };
interface QueuedMessage {
  id: FrameId | undefined;
  data: unknown;
}

const MAX_CLOSE_REASON_BYTES = 123;
/** Close codes for a connect execution that failed; anything else is 1011 (internal error). */
const CONNECT_FAILURE_CLOSE_CODES: Partial<Record<string, number>> = {
  PERMISSION_DENIED: 1008, // policy violation
  QUEUE_FULL: 1013, // try again later
  SHUTTING_DOWN: 1001, // going away
};
const CORK_FLUSH_BYTES = 64 * 1024;
const MAX_EXCLUDE = 10_000;

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
  /** Resolves when every execution of this connection, disconnect included, has settled. */
  readonly done: Promise<void>;

  readonly #ws: WebSocket;
  readonly #rt: SessionRuntime;
  readonly #context: ContextDescriptor;
  readonly #bridge: ChannelBridge;
  readonly #options: ExecuteOptions;
  readonly #finalOptions: ExecuteOptions;
  /** Aborts connect and message executions. */
  readonly #work = new AbortController();
  /** Aborts the disconnect execution (only a hard stop does). */
  readonly #final = new AbortController();
  readonly #queue: QueuedMessage[] = [];
  #running = 0;
  #accepted = false;
  #registered = false;
  #socketClosed = false;
  #alive = true;
  #corked = false;
  #corkedSocket: Duplex | undefined;
  #closeCause: CloseCause | undefined;
  #connectDone: Promise<void> = Promise.resolve();
  #idleWaiters: Array<() => void> = [];
  #resolveClosed!: () => void;
  #resolveDone!: () => void;

  constructor(ws: WebSocket, info: ConnectionInfo, context: ContextDescriptor, runtime: SessionRuntime) {
    this.#ws = ws;
    this.id = info.id;
    this.channel = info.channel;
    this.info = Object.freeze(info);
    this.#rt = runtime;
    this.#context = context;
    this.#bridge = { connectionId: info.id, path: info.path, call: (method, args) => this.#channelCall(method, args) };
    const hooks: ExecuteOptions = {
      channel: this.#bridge,
      ...(runtime.limits.timeoutMs !== undefined ? { timeoutMs: runtime.limits.timeoutMs } : {}),
      ...(runtime.onLog ? { onLog: (entry) => runtime.onLog!(entry, this.info) } : {}),
      ...(runtime.onEvent ? { onEvent: (event) => runtime.onEvent!(event, this.info) } : {}),
    };
    this.#options = { ...hooks, signal: this.#work.signal };
    this.#finalOptions = { ...hooks, signal: this.#final.signal };
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  get isOpen(): boolean {
    return this.#ws.readyState === WebSocket.OPEN;
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  get isSocketClosed(): boolean {
    return this.#socketClosed;
  }

  start(): void {
    const ws = this.#ws;
    ws.on('message', (data: RawData, isBinary: boolean) => this.#onFrame(data, isBinary));
    ws.on('pong', () => {
      this.#alive = true;
    });
    // ws reports protocol violations (oversize frame → 1009, bad UTF-8 → 1007) as 'error' and then
    // closes; without a listener the error would crash the host.
    ws.on('error', noop);
    ws.once('close', (code: number, reason: Buffer) => void this.#onClose(code, reason.toString()));
    this.#connectDone = this.#connect();
  }

  sendText(text: string): boolean {
    const ws = this.#ws;
    if (ws.readyState !== WebSocket.OPEN) return false;
    let buffered = ws.bufferedAmount;
    // One frame may always go out on an idle socket; beyond that, a client that does not read is
    // cut off instead of letting its backlog grow without bound.
    if (buffered > 0) {
      const max = this.#rt.limits.maxBufferedBytes;
      const bytes = Buffer.byteLength(text);
      if (buffered + bytes > max && this.#corked) {
        // Part of that may only be our own cork: flush it to the kernel and look again.
        this.#uncork();
        buffered = ws.bufferedAmount;
      }
      if (buffered > 0 && buffered + bytes > max) {
        this.terminate('backpressure');
        return false;
      }
    }
    this.#cork();
    ws.send(text);
    this.#rt.counters.framesOut++;
    if (this.#corked && ws.bufferedAmount >= CORK_FLUSH_BYTES) this.#uncork();
    return true;
  }

  /**
   * Frames sent in one turn of the event loop (the replies of a pipelined batch, a broadcast) leave
   * in one writev instead of one syscall each; uncorked on the next tick or once 64 KiB are waiting.
   * ws has no public handle on its socket, hence `_socket` (stable across ws 7 and 8).
   */
  #cork(): void {
    if (this.#corked) return;
    const socket = (this.#ws as unknown as { _socket?: Duplex | null })._socket;
    if (!socket || typeof socket.cork !== 'function') return;
    socket.cork();
    this.#corkedSocket = socket;
    this.#corked = true;
    process.nextTick(this.#uncork);
  }

  readonly #uncork = (): void => {
    if (!this.#corked) return;
    this.#corked = false;
    this.#corkedSocket?.uncork();
    this.#corkedSocket = undefined;
  };

  close(code = 1000, reason = ''): void {
    const ws = this.#ws;
    if (ws.readyState !== WebSocket.OPEN && ws.readyState !== WebSocket.CONNECTING) return;
    try {
      ws.close(code, reason);
    } catch {
      // An invalid code or over-long reason from a host call: close anyway, plainly.
      ws.close(1000);
    }
  }

  /** Close with a cause the disconnect handler will be told. */
  closeFor(cause: CloseCause, code: number, reason: string): void {
    this.#closeCause ??= cause;
    this.close(code, reason);
  }

  /** Destroy the socket without a closing handshake. */
  terminate(cause: CloseCause): void {
    if (this.#socketClosed) return;
    this.#closeCause ??= cause;
    if (cause === 'backpressure') this.#rt.counters.backpressureCloses++;
    if (cause === 'heartbeat-timeout') this.#rt.counters.heartbeatTimeouts++;
    this.#ws.terminate();
  }

  /** One heartbeat tick: terminate a peer that did not answer the previous ping, else ping it. */
  heartbeat(): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    if (!this.#alive) {
      this.terminate('heartbeat-timeout');
      return;
    }
    this.#alive = false;
    this.#ws.ping();
  }

  /** Abort everything still running or queued, disconnect included. */
  hardStop(): void {
    this.#queue.length = 0;
    this.#work.abort();
    this.#final.abort();
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
    const result = await this.#execute({ event: 'connect', connectionId: this.id }, this.#options);
    if (!result.ok) {
      this.#queue.length = 0;
      // A client that left while connect ran (abortOnClose) is not a server problem worth reporting.
      if (!(this.#socketClosed && result.error.code === 'ABORTED')) this.#report(result.error, 'connect');
      this.close(CONNECT_FAILURE_CLOSE_CODES[result.error.code] ?? 1011, result.error.code);
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
    this.#alive = true;
    this.#rt.counters.framesIn++;
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    const parsed = parseClientFrame(raw, isBinary);
    if (!parsed.ok) {
      this.#rt.counters.badFrames++;
      this.#sendError('VALIDATION_ERROR', parsed.message, parsed.replyTo);
      return;
    }
    const { maxInFlight } = this.#rt.limits;
    if (this.#queue.length + this.#running >= maxInFlight) {
      this.#rt.counters.queueFull++;
      this.#sendError('QUEUE_FULL', `This connection already has ${maxInFlight} message(s) in flight; wait for replies before sending more`, parsed.id ?? null);
      return;
    }
    this.#queue.push({ id: parsed.id, data: parsed.data });
    this.#pump();
  }

  #pump(): void {
    if (!this.#accepted) return;
    const { concurrency } = this.#rt.limits;
    while (this.#running < concurrency && this.#queue.length > 0) {
      const message = this.#queue.shift()!;
      this.#running++;
      void this.#handle(message);
    }
    if (this.#running === 0 && this.#queue.length === 0 && this.#idleWaiters.length > 0) {
      for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  async #handle({ id, data }: QueuedMessage): Promise<void> {
    const input = id === undefined ? { event: 'message', connectionId: this.id, data } : { event: 'message', connectionId: this.id, id, data };
    const result = await this.#execute(input, this.#options);
    const replyTo = id ?? null;
    try {
      if (result.ok) {
        if ((id !== undefined || result.data !== undefined) && !this.#sendFrame({ type: 'reply', replyTo, data: result.data ?? null }, 'message')) {
          this.#sendError('VALIDATION_ERROR', 'The handler returned a value that JSON cannot carry', replyTo);
        }
      } else {
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
    if (this.#registered && this.#rt.registry.get(this.id) === this) this.#rt.registry.unregister(this.id);
    this.#resolveClosed();
    if (this.#rt.abortOnClose) {
      this.#queue.length = 0;
      this.#work.abort();
    }
    await this.#connectDone;
    await this.#idle();
    if (this.#accepted) {
      const input = { event: 'disconnect', connectionId: this.id, code, reason, ...(this.#closeCause ? { cause: this.#closeCause } : {}) };
      const result = await this.#execute(input, this.#finalOptions);
      if (!result.ok) this.#report(result.error, 'disconnect');
    }
    this.#resolveDone();
  }

  #idle(): Promise<void> {
    if (this.#running === 0 && (this.#queue.length === 0 || !this.#accepted)) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  async #execute(input: Record<string, unknown>, options: ExecuteOptions): Promise<Outcome> {
    this.#rt.counters.executions++;
    let outcome: Outcome;
    try {
      const result = await this.#rt.backend.execute(
        { pluginId: this.#rt.pluginId, handlerId: this.#rt.handlerId, input, context: this.#context },
        options,
      );
      outcome = result.ok ? { ok: true, data: result.data } : { ok: false, error: result.error };
    } catch (error) {
      // The interface promises execute() never rejects; a foreign backend might.
      outcome = { ok: false, error: toHandlerError(error) };
    }
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
    this.#rt.counters.errorFrames++;
    this.sendText(JSON.stringify({ type: 'error', code, message, replyTo }));
  }

  #report(error: unknown, phase: ChannelErrorPhase): void {
    this.#rt.reportError(error, { phase, channel: this.channel, connectionId: this.id });
  }

  /**
   * The host end of `ctx.channel`: arrives directly (in-process) or over the runner RPC (worker-pool,
   * subprocess). Arguments come from plugin code, so each is checked; other connections are reachable
   * only within the same channel.
   */
  #channelCall(method: string, args: unknown[]): Promise<unknown> {
    try {
      return Promise.resolve(this.#perform(method, Array.isArray(args) ? args : []));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #perform(method: string, args: unknown[]): unknown {
    const registry = this.#rt.registry;
    switch (method) {
      case 'send':
        this.sendText(encodePush(args[0]));
        return undefined;
      case 'sendTo': {
        const target = this.#peer(args[0], 'sendTo');
        return target ? registry.send(target.id, args[1]) : false;
      }
      case 'broadcast': {
        const options = (args[1] ?? {}) as { exclude?: unknown; scope?: unknown };
        const exclude = options.exclude ?? [];
        if (!Array.isArray(exclude) || exclude.length > MAX_EXCLUDE || exclude.some((e) => typeof e !== 'string')) {
          throw new ValidationError('ctx.channel.broadcast(): options.exclude must be an array of connection ids');
        }
        if (options.scope !== undefined && options.scope !== 'channel' && options.scope !== 'path') {
          throw new ValidationError('ctx.channel.broadcast(): options.scope must be "channel" or "path"');
        }
        return registry.broadcast(this.channel, args[0], { exclude: exclude as string[], ...(options.scope === 'path' ? { path: this.info.path } : {}) });
      }
      case 'close': {
        const code = args[0] ?? 1000;
        const reason = args[1] ?? '';
        if (!isAllowedCloseCode(code)) {
          throw new ValidationError(`ctx.channel.close(): code must be 1000, 1001, 1008, 1011 or 3000-4999, got ${String(code)}`);
        }
        if (typeof reason !== 'string' || Buffer.byteLength(reason) > MAX_CLOSE_REASON_BYTES) {
          throw new ValidationError(`ctx.channel.close(): reason must be a string of at most ${MAX_CLOSE_REASON_BYTES} bytes`);
        }
        const target = args[2] === undefined || args[2] === null ? this : this.#peer(args[2], 'close');
        target?.close(code, reason);
        return undefined;
      }
      default:
        throw new ValidationError(`ctx.channel has no method "${String(method)}"`);
    }
  }

  /** Another connection of this channel, or undefined when it is unknown or on another channel. */
  #peer(id: unknown, method: string): ChannelConnection | undefined {
    if (typeof id !== 'string') throw new ValidationError(`ctx.channel.${method}(): the connection id must be a string`);
    const target = id === this.id ? this : this.#rt.registry.get(id);
    return target && target.channel === this.channel ? target : undefined;
  }
}

function isAllowedCloseCode(code: unknown): code is number {
  return typeof code === 'number' && Number.isInteger(code) && (code === 1000 || code === 1001 || code === 1008 || code === 1011 || (code >= 3000 && code <= 4999));
}

/** `{ accept: false, reason?, code? }` from a connect handler; code limited to 1008 or 4000-4999. */
function readDenial(data: unknown): { code: number; reason: string } | undefined {
  if (typeof data !== 'object' || data === null || (data as { accept?: unknown }).accept !== false) return undefined;
  const { reason, code } = data as { reason?: unknown; code?: unknown };
  const closeCode = typeof code === 'number' && Number.isInteger(code) && code >= 4000 && code <= 4999 ? code : 1008;
  return { code: closeCode, reason: typeof reason === 'string' ? truncateUtf8(reason, MAX_CLOSE_REASON_BYTES) : 'connection refused' };
}

function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let out = text.slice(0, maxBytes);
  while (Buffer.byteLength(out) > maxBytes) out = out.slice(0, -1);
  return out;
}

function noop(): void {}
