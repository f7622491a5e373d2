import { receiveMessageOnPort, type MessagePort, type Worker } from 'node:worker_threads';
import { CELLS, type CrashReport, type HostToThread, type RetireReason, type ThreadToHost } from './thread-protocol.js';

/** Why a thread ended, as the host counts it. */
export type ThreadEnd = 'crashed' | 'terminated' | 'retired' | 'stopped';

/**
 * The host's view of one pool thread: its channel, what runs on it, and — when it dies — the
 * facts that say why (exit code, 'error' event, the thread's own last words).
 */
export class PoolThread {
  readonly id: number;
  readonly worker: Worker;
  /** The thread's end of its channel arrives with its hello; until then nothing can be sent. */
  port: MessagePort | undefined;
  /** piscina counts it ready (it reported workerCreate): a task posted now starts at once. */
  ready = false;
  /** A piscina task (a session, see thread-protocol.ts) is open on it. */
  session = false;
  /** The execution key running here, if any (in session without one, the thread lingers: see thread-protocol.ts). */
  running: number | undefined;
  /** Execution keys handed over behind it, in order: the thread begins them one after the other. */
  readonly staged: number[] = [];
  /** The claim cells and doorbell (see thread-protocol.ts), from its hello. */
  claims: Int32Array | undefined;
  /** Which execution holds each claim cell (0: free). */
  readonly cellOwner: number[] = new Array<number>(CELLS).fill(0);
  /** Its executions have been dealt with after it died (once). */
  gone = false;
  /** What the thread said about its own death (see CrashReport), oldest first. */
  readonly reports: CrashReport[] = [];
  /** The Worker's 'error' event: an uncaught exception, or ERR_WORKER_OUT_OF_MEMORY. */
  error: unknown;
  exitCode: number | undefined;
  /** Set when the host ends the thread on purpose (timeout, abort, shutdown, retirement). */
  endedBy: { kind: 'terminated' } | { kind: 'retired'; reason: RetireReason } | undefined;
  /** Set when piscina stopped it (idle timeout, pool close) before it exited by itself. */
  stoppedByPool = false;
  readonly exited: Promise<void>;
  #markExited!: () => void;
  #connected = false;
  readonly #route: (thread: PoolThread, message: ThreadToHost) => void;

  constructor(id: number, worker: Worker, route: (thread: PoolThread, message: ThreadToHost) => void, onExit: (thread: PoolThread) => void) {
    this.id = id;
    this.worker = worker;
    this.#route = route;
    this.exited = new Promise((resolve) => {
      this.#markExited = resolve;
    });
    // Prepended: these must record the facts before piscina's own listeners react to the same
    // event (piscina rejects the running task from inside them).
    worker.prependListener('error', (error) => {
      this.error ??= error;
    });
    worker.prependOnceListener('exit', (code) => {
      this.exitCode = code;
      // Whatever the thread managed to send before it went (its result, its last words) is
      // already queued on the channel: read it now, then let the channel go.
      this.drain();
      this.port?.close();
      this.port = undefined;
      onExit(this);
      this.#markExited();
    });
  }

  get alive(): boolean {
    return this.exitCode === undefined;
  }

  /** It loaded its entry and said hello. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Attach the thread's channel and shared cells (from its hello). */
  connect(port: MessagePort, claims: SharedArrayBuffer): void {
    this.#connected = true;
    this.port = port;
    this.claims = new Int32Array(claims);
    port.on('message', (message: ThreadToHost) => this.#route(this, message));
    // The channel never keeps the host alive: piscina refs the thread while a task runs on it.
    port.unref();
  }

  /** Handle, synchronously and in order, every message the thread has sent so far. */
  drain(): void {
    const port = this.port;
    if (!port) return;
    for (let entry = receiveMessageOnPort(port); entry !== undefined; entry = receiveMessageOnPort(port)) {
      this.#route(this, entry.message as ThreadToHost);
    }
  }

  send(message: HostToThread): void {
    if (!this.port) throw new Error(`thread ${this.id} has no channel yet`);
    this.port.postMessage(message);
  }

  record(report: CrashReport): void {
    this.reports.push(report);
  }

  /** How the thread ended, once it has. */
  get end(): ThreadEnd {
    if (this.endedBy) return this.endedBy.kind;
    if (this.stoppedByPool && this.error === undefined) return 'stopped';
    return 'crashed';
  }
}
