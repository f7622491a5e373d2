import { AbortedError, ValidationError, WorkerCrashedError, serializeError, type KnownExecutionError } from '@kb-labs/plugin-execution-core';
import { HostSession, unwrapRunnerResult, type DispatchControl, type RunnerTask, type RunnerToHost } from '@kb-labs/plugin-execution-core/backend-kit';
import type { Msg } from '@nats-io/transport-node';
import { TransferRefusedError } from '../shared/courier.js';
import { encode, formatBytes, type Kind, type LogBody, type ResultBody, type StartedReply, type TaskBody, type WorkerIdentity } from '../shared/wire.js';

/** What one remote execution needs from the host's connection (HostLink). */
export interface ExecutionLink {
  readonly maxPayloadBytes: number;
  /** The largest body one message carries. */
  readonly partBytes: number;
  readonly workerLostMs: number;
  /** Whether executions get a workspace on the worker. */
  readonly workspace: boolean;
  /** Whether a new execution may be offered to a worker first (none of this host's waits in the stream). */
  mayOffer(): boolean;
  /** Offer the task to one worker with a free slot; the answer comes to `taken()` or `offerDeclined()`. */
  offerTask(execution: RemoteExecution, body: Uint8Array, remainingMs: number): void;
  /** Put the task on the pool's stream; resolves with its stream sequence. */
  publishTask(executionId: string, body: Uint8Array): Promise<number>;
  /** Remove a task not yet started from the stream (best effort: a worker may have it already). */
  deleteTask(seq: number): void;
  toWorker(workerId: string, kind: Kind, executionId: string, body: Uint8Array): Promise<void> | undefined;
}

/**
 * The host side of one execution sent to the pool: offers the task to a worker with a free slot,
 * else publishes it to the stream and accepts the first worker that starts it (and refuses any
 * other: at most once); relays its logs, events and calls, watches its heartbeats, and settles
 * `dispatch` with its result or the reason it has none.
 */
export class RemoteExecution {
  readonly id: string;
  readonly #task: RunnerTask;
  readonly #control: DispatchControl;
  readonly #link: ExecutionLink;
  readonly #pluginVersion: string;
  /** When its time runs out, on this host's monotonic clock (`performance.now()`). */
  readonly #deadline: number;
  readonly #session: HostSession;
  #settle: { resolve: (value: unknown) => void; reject: (error: unknown) => void } | undefined;
  #worker: WorkerIdentity | undefined;
  #seq: number | undefined;
  #input: Uint8Array | undefined;
  #lastHeard = 0;
  /** Offered to the workers and not answered yet: when (Date.now()), and the task to publish if none takes it. */
  #offer: { at: number; body: Uint8Array } | undefined;
  /** Sent to the stream (its publish may still be on its way). */
  #streamed = false;
  /** What ended it, when it was not a stop (a worker taking it later is told). */
  #endedWith: unknown;

  constructor(task: RunnerTask, control: DispatchControl, link: ExecutionLink, pluginVersion: string) {
    this.id = task.executionId;
    this.#task = task;
    this.#control = control;
    this.#link = link;
    this.#pluginVersion = pluginVersion;
    this.#deadline = performance.now() + task.timeoutMs;
    this.#session = new HostSession(control, (message) =>
      this.#toWorker('rpc-reply', encode(message, 'platform call result'), (refused) => {
        // The handler's call fails with it, rather than waiting for a reply the worker dropped.
        const error = serializeError(this.#refusedBy('platform call result', refused));
        this.#toWorker('rpc-reply', encode({ type: 'rpc-reply', id: message.type === 'rpc-reply' ? message.id : 0, ok: false, error }, 'error'));
      }),
    );
  }

  /** The worker running it, once it started. */
  get worker(): WorkerIdentity | undefined {
    return this.#worker;
  }

  /** Offered to the workers, and no answer yet. */
  get offered(): boolean {
    return this.#offer !== undefined;
  }

  /** It waits in the stream for a worker. */
  get inStream(): boolean {
    return this.#streamed && !this.#worker && this.#settle !== undefined;
  }

  /** Send it and wait for its end. */
  run(): Promise<unknown> {
    const done = new Promise<unknown>((resolve, reject) => (this.#settle = { resolve, reject }));
    const unsubscribe = this.#control.onStop((reason) => this.#stop(reason));
    this.#publish().catch((error: unknown) => this.#finish(undefined, error));
    return done.finally(unsubscribe);
  }

  async #publish(): Promise<void> {
    const body = this.#taskBody();
    let bytes = encode(body, 'input', this.#task.input);
    if (bytes.length > this.#link.partBytes) {
      // Too large for one stream message: the input goes to the worker once it has started.
      this.#input = this.#checkSize(encode(this.#task.input, 'input'), 'input');
      bytes = this.#checkSize(encode({ ...body, input: undefined, inputFollows: true }, 'context'), 'context', this.#link.partBytes, "one message of the server's max_payload");
    }
    // A worker with a free slot takes it at once, unless one of this host's executions waits in
    // the stream: that one goes first.
    if (!this.#input && this.#link.mayOffer()) {
      this.#offer = { at: Date.now(), body: bytes };
      this.#link.offerTask(this, bytes, Math.max(1, Math.ceil(this.#deadline - performance.now())));
      return;
    }
    await this.#toStream(bytes);
  }

  async #toStream(bytes: Uint8Array): Promise<void> {
    this.#streamed = true;
    const seq = await this.#link.publishTask(this.id, bytes);
    this.#seq = seq;
    // Stopped while it was being published: it must never run.
    if (this.#control.stopReason && !this.#worker) this.#link.deleteTask(seq);
  }

  /**
   * A worker took the offer and runs it. Stopped (or given up on) meanwhile: that worker stops it
   * at once, not at its next heartbeat.
   */
  taken(worker: WorkerIdentity): void {
    this.#offer = undefined;
    if (!this.#settle) {
      const reason = this.#control.stopReason ?? this.#endedWith ?? new AbortedError(`Execution ${this.id} ended before a worker took it`);
      this.#link.toWorker(worker.id, 'cancel', this.id, encode({ reason: serializeError(reason) }, 'cancel'))?.catch(() => undefined);
      return;
    }
    // Taken after its start was accepted (a worker that asked first: see WorkerExecution).
    if (this.#worker) return;
    this.#running(worker);
  }

  /** No worker took the offer (none listens, none had a slot): the task waits in the stream. */
  offerDeclined(): void {
    const offer = this.#offer;
    this.#offer = undefined;
    if (!offer || !this.#settle || this.#worker) return;
    this.#toStream(offer.body).catch((error: unknown) => this.#finish(undefined, error));
  }

  #running(worker: WorkerIdentity): void {
    this.#worker = worker;
    this.#lastHeard = Date.now();
    this.#control.setRunner({ id: worker.id, host: worker.host, pid: worker.pid });
  }

  #taskBody(): TaskBody {
    const task = this.#task;
    return {
      executionId: task.executionId,
      pluginId: task.pluginId,
      pluginVersion: this.#pluginVersion,
      handlerId: task.handlerId,
      input: task.input,
      inputFollows: false,
      context: task.context,
      timeoutMs: task.timeoutMs,
      workspace: this.#link.workspace,
      keepWorkspace: this.#control.keepWorkspace,
      ...(task.channel ? { channel: task.channel } : {}),
      ...(task.traceparent ? { traceparent: task.traceparent } : {}),
    };
  }

  #checkSize(bytes: Uint8Array, what: string, limit = this.#link.maxPayloadBytes, name = `maxPayloadBytes: ${limit}`): Uint8Array {
    if (bytes.length <= limit) return bytes;
    throw new ValidationError(`The ${what} is ${formatBytes(bytes.length)} encoded, over the queue backend's limit of ${formatBytes(limit)} (${name})`, {
      details: { path: what, reason: 'too-large', bytes: bytes.length, limit },
    });
  }

  /** A worker says it starts it: the first one is accepted, any other refused (and aborts). */
  started(worker: WorkerIdentity, msg: Msg): void {
    const refuse = (reason: string) => msg.respond(encode({ accept: false, reason } satisfies StartedReply, 'reply'));
    if (this.#worker) return void refuse(`already started by worker ${this.#worker.id}`);
    if (this.#control.stopReason || !this.#settle) return void refuse('the execution was stopped before it started');
    const remainingMs = Math.ceil(this.#deadline - performance.now());
    if (remainingMs <= 0) return void refuse('its time ran out before it started');
    this.#offer = undefined;
    this.#running(worker);
    msg.respond(encode({ accept: true, remainingMs } satisfies StartedReply, 'reply'));
    if (this.#input) this.#toWorker('input', this.#input, (refused) => this.fail(this.#refusedBy('input', refused)));
    this.#input = undefined;
  }

  /** A heartbeat from `workerId`: true when it is the worker running this execution. */
  heartbeat(workerId: string): boolean {
    if (this.#worker?.id !== workerId || !this.#settle) return false;
    this.#lastHeard = Date.now();
    return true;
  }

  log(body: LogBody): void {
    this.#lastHeard = Date.now();
    this.#control.log(body.level, String(body.message), body.fields, body.stream);
  }

  /** An event or a platform/channel call, in the runner protocol's terms. */
  relay(message: RunnerToHost): void {
    this.#lastHeard = Date.now();
    this.#session.handle(message);
  }

  result(body: ResultBody): void {
    const { meta } = body;
    this.#control.reportWorkspace({ artifacts: Array.isArray(meta?.artifacts) ? meta.artifacts : [], ...(meta?.workspaceDir ? { dir: meta.workspaceDir } : {}) });
    if (this.#worker && (meta?.pid !== undefined || meta?.threadId !== undefined)) {
      this.#control.setRunner({ id: this.#worker.id, host: this.#worker.host, ...(meta.pid !== undefined ? { pid: meta.pid } : {}), ...(meta.threadId !== undefined ? { threadId: meta.threadId } : {}) });
    }
    try {
      this.#finish(unwrapRunnerResult(body.ok ? { type: 'result', ok: true, data: body.data } : { type: 'result', ok: false, error: body.error }));
    } catch (error) {
      this.#finish(undefined, error);
    }
  }

  /** Fail it with WORKER_CRASHED if its worker has been silent for longer than allowed, or no worker answered its offer. */
  checkLost(now: number, serverSilentMs: number): void {
    if (!this.#settle) return;
    if (this.#offer && !this.#worker && now - this.#offer.at > this.#link.workerLostMs) return this.#offerLost(now - this.#offer.at);
    if (!this.#worker || now - this.#lastHeard <= this.#link.workerLostMs) return;
    const what = `sent no heartbeat for ${now - this.#lastHeard} ms (workerLostMs: ${this.#link.workerLostMs})`;
    const hostCut = serverSilentMs > 0 ? `; the NATS server has not answered this host for ${serverSilentMs} ms either: the host's own link to it may be cut` : '';
    this.fail(this.#lost(what + hostCut));
  }

  /** End it now with `error` (its worker or the connection is lost); a stop's reason wins. */
  fail(error: KnownExecutionError): void {
    this.#finish(undefined, error);
  }

  /**
   * Offered, and no answer: a worker may have taken it and gone silent since, so it is not sent
   * anywhere else (at most once); a worker that answers later is told to stop it.
   */
  #offerLost(silentMs: number): void {
    const { pluginId, handlerId } = this.#task;
    const what = `no worker answered the offer of handler "${handlerId}" of plugin "${pluginId}" within ${silentMs} ms (workerLostMs: ${this.#link.workerLostMs})`;
    this.fail(new WorkerCrashedError(`Execution ${this.id}: ${what}; a worker may have taken it and gone silent since`, { details: { reason: 'runner-lost', pluginId, handlerId, message: what } }));
  }

  #lost(what: string): WorkerCrashedError {
    const { pluginId, handlerId } = this.#task;
    return new WorkerCrashedError(`Worker ${this.#worker?.id} (${this.#worker?.host}) running handler "${handlerId}" of plugin "${pluginId}" ${what}`, {
      details: { reason: 'runner-lost', runnerId: this.#worker?.id, pluginId, handlerId, message: what },
    });
  }

  #stop(reason: KnownExecutionError): void {
    if (!this.#worker) {
      // Not started: take it off the stream; a worker that has it already is refused at its start.
      if (this.#seq !== undefined) this.#link.deleteTask(this.#seq);
      this.#finish(undefined, reason);
      return;
    }
    // Started: the worker stops it (ctx.signal, then its local backend's stop) and reports its
    // end, with the artifacts; the heartbeat watch bounds the wait.
    this.#toWorker('cancel', encode({ reason: serializeError(reason) }, 'cancel'));
  }

  #toWorker(kind: Kind, body: Uint8Array, onRefused?: (refused: TransferRefusedError) => void): void {
    const worker = this.#worker;
    if (!worker) return;
    this.#link.toWorker(worker.id, kind, this.id, body)?.catch((error: unknown) => {
      if (error instanceof TransferRefusedError) onRefused?.(error);
      else if (kind === 'input') this.fail(this.#lost(`could not be sent the input: ${(error as Error)?.message}`));
    });
  }

  /** The worker's limit, lower than this host's, refused what this host sent it. */
  #refusedBy(what: string, refused: TransferRefusedError): ValidationError {
    const worker = this.#worker;
    return refused.toValidationError(what, `the limit of worker ${worker?.id} (${worker?.host})`, `this host's is ${formatBytes(this.#link.maxPayloadBytes)}`, ': give hosts and workers the same limit');
  }

  #finish(data: unknown, error?: unknown): void {
    const settle = this.#settle;
    if (!settle) return;
    this.#settle = undefined;
    this.#endedWith = error;
    this.#session.close();
    const stopped = this.#control.stopReason;
    if (stopped) settle.reject(stopped);
    else if (error !== undefined) settle.reject(error);
    else settle.resolve(data);
  }
}
