import { ValidationError, WorkerCrashedError, serializeError, type KnownExecutionError } from '@kb-labs/plugin-execution-core';
import { HostSession, hostLogFields, monotonicNow, refuseWhatCloneRefuses, serializeErrorForRunner, unwrapRunnerResult, type DispatchControl, type RunnerTask, type RunnerToHost } from '@kb-labs/plugin-execution-core/backend-kit';
import type { Msg } from '@nats-io/transport-node';
import { encodedAtLeast } from '../shared/encoded-size.js';
import { TransferRefusedError } from '../shared/transfer-refused.js';
import { encode, encodeTask, formatBytes, namedAs, isLogBody, newTaskId, type Kind, type ResultBody, type StartedReply, type WorkerIdentity } from '../shared/wire.js';
import type { ExecutionLink } from './execution-link.js';
import { taskBody } from './task-body.js';
import { taskGone, type QueuedTask } from './stream-tasks.js';
import type { PoolStream } from '../shared/pool-stream.js';
import { logMessageOf, lostOutputMessage, outputSentOf, shownWorker } from './worker-bodies.js';

/** Heartbeats of its worker after an input's transfer failed, none asking for it again, before the execution fails. */
const INPUT_LOST_BEATS = 2;

/**
 * The host side of one execution sent to the pool: publishes the task, accepts the first worker
 * that starts it (and refuses any other: at most once), relays its logs, events and calls,
 * watches its heartbeats, and settles `dispatch` with its result or the reason it has none.
 */
export class RemoteExecution {
  readonly id: string;
  readonly #task: RunnerTask;
  readonly #control: DispatchControl;
  readonly #link: ExecutionLink;
  /** The host's copy of the plugin: its version, and what the handler declares (declaredPermissionsKey). */
  readonly #plugin: { version: string; permissions: string | undefined };
  /** When its time runs out, on this host's monotonic clock (`monotonicNow()`). */
  readonly #deadline: number;
  readonly #session: HostSession;
  #settle: { resolve: (value: unknown) => void; reject: (error: unknown) => void } | undefined;
  #worker: WorkerIdentity | undefined;
  /** Its task in the pool's stream, once the stream took it. */
  #queued: QueuedTask | undefined;
  /** Its task's Nats-Msg-Id: its id and a nonce of this call (an id may be used again once its execution is over, as on a local backend). */
  readonly #taskId: string;
  /** When the stream acknowledged its task (`monotonicNow()`). */
  #publishedAt: number | undefined;
  #input: Uint8Array | undefined;
  /** Stops the input's transfer in flight (one sent again, a withdrawn start, the end). */
  #inputSend: AbortController | undefined;
  /** The input's last transfer failed, not refused: its worker's heartbeats since. */
  #inputFailure: { message: string; beats: number } | undefined;
  #lastHeard = 0;
  /** Its worker named it in a heartbeat: it took the start this host accepted. */
  #confirmed = false;
  /** Its host is shutting down: a start withdrawn from now on is not taken again (refuseStart). */
  #startRefused: KnownExecutionError | undefined;
  /** Its log lines and events that arrived (see lostOutput()). */
  #outputHeard = 0;

  constructor(task: RunnerTask, control: DispatchControl, link: ExecutionLink, plugin: { version: string; permissions: string | undefined }) {
    this.id = task.executionId;
    this.#taskId = newTaskId(task.executionId);
    this.#task = task;
    this.#control = control;
    this.#link = link;
    this.#plugin = plugin;
    this.#deadline = monotonicNow() + task.timeoutMs;
    this.#session = new HostSession(control, (message) => {
      // The handler's call fails with what refuses it, rather than waiting for a reply the worker dropped.
      const fail = (why: ValidationError) => {
        const error = serializeError(why);
        this.#toWorker('rpc-reply', encode({ type: 'rpc-reply', id: message.type === 'rpc-reply' ? message.id : 0, ok: false, error }, 'error'));
      };
      try {
        // Over this host's own limit by its strings and binary data alone: refused before it is copied
        // or encoded (a service's 200 MB answer held the host's event loop for seconds, and with it
        // the heartbeats of every execution it has on the queue: each was written off by its worker).
        this.#checkSize(encodedAtLeast(message.type === 'rpc-reply' && message.ok ? message.value : undefined), 'platform call result');
      } catch (error) {
        return fail(error as ValidationError);
      }
      // What structured clone refuses, v8's serialiser would write as {} (a URL on Node 22): refused as on the other backends.
      refuseWhatCloneRefuses(message);
      const bytes = encode(message, 'platform call result');
      try {
        // Over this host's own limit: refused here, as an input is (not sent for the worker to refuse).
        this.#checkSize(bytes, 'platform call result');
      } catch (error) {
        return fail(error as ValidationError);
      }
      this.#toWorker('rpc-reply', bytes, (refused) => fail(this.#refusedBy('platform call result', refused)));
    });
  }

  /** The worker running it, once it started. */
  get worker(): WorkerIdentity | undefined { return this.#worker; } // prettier-ignore

  /** Send it and wait for its end. */
  run(): Promise<unknown> {
    const done = new Promise<unknown>((resolve, reject) => (this.#settle = { resolve, reject }));
    const unsubscribe = this.#control.onStop((reason) => this.#stop(reason));
    this.#publish().catch((error: unknown) => this.#finish(undefined, error));
    return done.finally(unsubscribe);
  }

  async #publish(): Promise<void> {
    // Over the limit by its strings and binary data alone: refused unencoded (a 200 MB one held the loop ~1.8 s).
    this.#checkSize(encodedAtLeast(this.#task.input), 'input');
    const body = taskBody(this.#task, this.#plugin, this.#link.workspace, this.#control.keepWorkspace);
    const whole = encodeTask(body);
    // This host's own limit, whether or not the input fits in one stream message.
    if (whole.length > this.#link.maxPayloadBytes) this.#checkSize(encode(this.#task.input, 'input'), 'input');
    // Decided as it goes out, for the server it goes to: larger than a courier part, the input
    // goes to the worker in parts once it has started (one large stream message would hold a
    // slow link, and the heartbeats behind it, for seconds).
    const forServer = (): Uint8Array => {
      const partBytes = this.#link.partBytes;
      this.#input = undefined;
      if (whole.length <= this.#link.inlineInputBytes) return whole;
      this.#input = this.#checkSize(encode(this.#task.input, 'input'), 'input');
      return this.#checkSize(encode({ ...body, input: undefined, inputFollows: true }, 'context'), 'context', partBytes, "one message of the server's max_payload");
    };
    const queued = (this.#queued = await this.#link.publishTask(this.id, this.#taskId, forServer));
    this.#publishedAt = monotonicNow();
    // Stopped, or failed (its host's connection dropped as it went: the retry confirmed it), while it was being published: it must never run.
    if ((this.#control.stopReason || !this.#settle) && !this.#worker) this.#link.deleteTask(queued);
  }

  /** `encoded`, or the ValidationError naming `what` when it is over `limit`; a number is what it takes at least, before encoding (encodedAtLeast). */
  #checkSize<T extends Uint8Array | number>(encoded: T, what: string, limit = this.#link.maxPayloadBytes, name = `maxPayloadBytes: ${limit}`): T {
    const bytes = typeof encoded === 'number' ? encoded : encoded.length;
    if (bytes <= limit) return encoded;
    throw new ValidationError(`${namedAs(what)} ${typeof encoded === 'number' ? 'at least ' : ''}${formatBytes(bytes, limit)} encoded, over the queue backend's limit of ${formatBytes(limit, bytes)} (${name})`, {
      details: { path: what, reason: 'too-large', bytes, limit },
    });
  }

  /**
   * A worker says it starts it: the first one is accepted, any other refused (and aborts). `taskId`:
   * the task it took (its Nats-Msg-Id); one of an earlier execution under the same id, left in the
   * stream, is refused: it would run that execution's input for this one.
   */
  started({ worker, task: taskId }: { worker: WorkerIdentity; task?: unknown }, msg: Msg): void {
    const refuse = (reason: string, retry = false) => msg.respond(encode({ accept: false, reason, ...(retry ? { retry } : {}) } satisfies StartedReply, 'reply'));
    if (taskId !== undefined && taskId !== this.#taskId) return void refuse('its task is that of an earlier execution under the same id');
    // The start accepted may be one its worker withdraws (its answer came too late; not once it named it in a heartbeat),
    // and this a later delivery (to that worker or another): taken away now, the task would never run; put back after, it comes round until the end.
    if (this.#worker) return void refuse(`already started by worker ${this.#worker.id}`, !this.#confirmed);
    if (this.#control.stopReason || !this.#settle) return void refuse('the execution was stopped before it started');
    const remainingMs = Math.ceil(this.#deadline - monotonicNow());
    if (remainingMs <= 0) return void refuse('its time ran out before it started');
    this.#worker = worker;
    this.#lastHeard = monotonicNow();
    this.#control.setRunner({ id: worker.id, host: worker.host, pid: worker.pid });
    msg.respond(encode({ accept: true, remainingMs } satisfies StartedReply, 'reply'));
    // Kept until the end: a worker that withdraws its start (below) leaves it to another.
    this.#sendInput();
  }

  /**
   * The worker's connection dropped while the input was on its way: the parts in flight may be
   * lost with it, so the input goes again, whole (the transfer in flight is dropped).
   */
  inputWanted(workerId: string): void {
    if (this.#worker?.id === workerId && this.#settle && !this.#control.stopReason) this.#sendInput();
  }

  /** Its worker has the whole input (its answer to the last part may have been lost in a drop): the transfer's end, whatever it says, changes nothing. */
  inputTaken(workerId: string): void {
    if (this.#worker?.id !== workerId) return;
    this.#inputSend?.abort();
    this.#inputFailure = undefined;
  }

  #sendInput(): void {
    const worker = this.#worker;
    if (!this.#input || !worker) return;
    this.#inputSend?.abort();
    const send = (this.#inputSend = new AbortController());
    this.#inputFailure = undefined;
    this.#link.toWorker(worker.id, 'input', this.id, this.#input, send.signal)?.catch((error: unknown) => {
      if (send.signal.aborted) return;
      if (error instanceof TransferRefusedError) return this.#failThere(this.#refusedBy('input', error));
      // Its worker reconnecting (no responders, parts lost) asks for it again; see heartbeat().
      this.#inputFailure = { message: (error as Error)?.message, beats: 0 };
    });
  }

  /**
   * The worker this host accepted gave up waiting for the acceptance (it came too late: this
   * host's event loop was blocked, say) and put the task back in the stream without running it:
   * the next worker's `started` is accepted. Stopped meanwhile (its cancel went to that worker), or
   * its host past shutdown's first second (refuseStart), it ends now: it would start only to be stopped.
   * Not once it named it in a heartbeat: it runs there (a forgery, or a worker of the same id), not to start twice.
   */
  withdrawn(workerId: string): void {
    if (this.#worker?.id !== workerId || this.#confirmed || !this.#settle) return;
    this.#worker = undefined;
    this.#inputSend?.abort();
    const stopped = this.#control.stopReason ?? this.#startRefused;
    if (stopped) this.#stop(stopped);
  }

  /**
   * A heartbeat from `workerId`: true when it is the worker running this execution. Stopped, and
   * still running there: the cancel goes again (the first may have been lost in a reconnection).
   */
  heartbeat(workerId: string): boolean {
    if (this.#worker?.id !== workerId || !this.#settle) return false;
    this.#lastHeard = monotonicNow();
    this.#confirmed = true;
    const stopped = this.#control.stopReason;
    if (stopped) this.#toWorker('cancel', encode({ reason: serializeErrorForRunner(stopped, 'the host') }, 'cancel'));
    // An input that did not get through, and its worker, there all along, does not ask for it again.
    const failure = this.#inputFailure;
    if (failure && ++failure.beats > INPUT_LOST_BEATS) this.#failThere(this.#lost(`could not be sent the input: ${failure.message}`));
    return true;
  }

  /** Its worker said something about it (a message, a part of one). */
  heard(): void {
    if (this.#worker) this.#lastHeard = monotonicNow();
  }

  log(body: unknown): void {
    this.#lastHeard = monotonicNow();
    this.#outputHeard++;
    // Its fields cut as its worker's runtime cuts them (those of a line forged, or of a worker of another version, reached onLog whole).
    if (isLogBody(body)) this.#control.log(body.level, logMessageOf(body), hostLogFields(body.fields), body.stream);
    else this.malformed('log line');
  }

  /** An event or a platform/channel call, in the runner protocol's terms. */
  relay(message: RunnerToHost): void {
    this.#lastHeard = monotonicNow();
    if (message.type === 'event') this.#outputHeard++;
    this.#session.handle(message);
  }

  /**
   * A worker's start of it was accepted: what else comes under its id before that (a log line, a
   * result) is from another execution under the same id, one this host lost (a server restart),
   * and is dropped.
   */
  get accepted(): boolean {
    return this.#worker !== undefined;
  }

  /** `body`: of the shape workers send (worker-message.ts, resultProblem); `outputSent`: how many log lines and events its worker sent before the result (absent from older workers). */
  result(body: ResultBody, outputSent?: string): void {
    this.#lostOutput(outputSentOf(outputSent, monotonicNow() - this.#deadline + this.#task.timeoutMs));
    const { meta } = body;
    this.#control.reportWorkspace({ artifacts: Array.isArray(meta?.artifacts) ? meta.artifacts : [], truncated: meta?.artifactsTruncated === true, ...(meta?.workspaceDir ? { dir: meta.workspaceDir } : {}) });
    if (this.#worker && (meta?.pid !== undefined || meta?.threadId !== undefined)) {
      this.#control.setRunner({ id: this.#worker.id, host: this.#worker.host, ...(meta.pid !== undefined ? { pid: meta.pid } : {}), ...(meta.threadId !== undefined ? { threadId: meta.threadId } : {}) });
    }
    try {
      this.#finish(unwrapRunnerResult(body.ok ? { type: 'result', ok: true, data: body.data } : { type: 'result', ok: false, error: body.error }, { trusted: true }));
    } catch (error) {
      this.#finish(undefined, error);
    }
  }

  /**
   * Log lines and events its worker sent that never arrived: a reset of the worker's connection
   * takes what was on the wire, not yet at the server (the result goes again; they do not). Said,
   * not lost silently, before the result.
   */
  #lostOutput(sent: number | undefined): void {
    if (!this.#settle || sent === undefined || sent <= this.#outputHeard) return;
    const lost = sent - this.#outputHeard;
    this.#control.log('warn', lostOutputMessage(lost, sent, this.#worker), { lost, sent, workerId: this.#worker?.id }, 'logger');
  }

  /** Something its worker sent for it cannot be read here (shared/wire.ts decode): it fails so, and its worker stops it. */
  unreadable(error: ValidationError): void {
    if (this.#settle) this.#failThere(error);
  }

  /** Its worker (a worker, for a start) sent a `what` of another shape than workers send (a peer's forgery; `problem`: how): it fails so (WORKER_CRASHED, protocol), and its worker stops it. */
  malformed(what: string, problem?: string): void {
    if (!this.#settle) return;
    const { pluginId, handlerId } = this.#task;
    const why = `sent a ${what} of another shape than workers send${problem === undefined ? '' : `: ${problem}`}`;
    const error = new WorkerCrashedError(`${this.#worker ? `Worker ${shownWorker(this.#worker)} running` : 'A worker starting'} handler "${handlerId}" of plugin "${pluginId}" ${why}`, {
      details: { reason: 'protocol', runnerId: this.#worker?.id, pluginId, handlerId, message: why },
    });
    this.#failThere(error);
  }

  /** Fail it with WORKER_CRASHED if its worker has been silent for longer than allowed. */
  checkLost(now: number, serverSilentMs: number): void {
    const lostMs = this.#link.workerLostMs;
    if (!this.#worker || !this.#settle || now - this.#lastHeard <= lostMs) return;
    // Accepted, never named by its worker, which is there: the answer to its start may have been
    // lost (a reset), and its withdrawal, which puts the task back to run, is on its way.
    const seen = this.#link.workerSeenAt(this.#worker);
    const present = seen !== undefined && now - seen <= lostMs;
    if (!this.#confirmed && present && now - this.#lastHeard <= 2 * lostMs) return;
    const silentFor = Math.round(now - this.#lastHeard);
    const what = !present
      ? `sent no heartbeat for ${silentFor} ms (workerLostMs: ${lostMs})`
      : this.#confirmed
        ? `was last seen ${Math.round(now - seen!)} ms ago but has named it in no heartbeat for ${silentFor} ms (workerLostMs: ${lostMs}): its end (the result) may have been lost on the way, or the worker has gone since`
        : `was accepted to start it, and named it in no heartbeat for ${silentFor} ms (workerLostMs: ${lostMs}): the answer to its start may have been lost on the way`;
    const hostCut = serverSilentMs > 0 ? `; the NATS server has not answered this host for ${Math.round(serverSilentMs)} ms either: the host's own link to it may be cut` : '';
    this.fail(this.#lost(what + hostCut));
  }

  /**
   * The pool's stream, read after its task was put there (`readAt`), no longer holds the task, and
   * no worker took it (a worker acknowledges a task only once this host accepted its start): the
   * stream purged, the message deleted, the stream made anew. It fails now, saying so, rather than
   * as a TIMEOUT blaming the workers.
   */
  checkInStream(stream: PoolStream, readAt: number): void {
    const queued = this.#queued;
    if (this.#worker || !queued || this.#publishedAt === undefined || this.#publishedAt >= readAt) return;
    const { pluginId, handlerId } = this.#task;
    const gone = (what = taskGone(stream, readAt - this.#publishedAt!)) => this.fail(new WorkerCrashedError(`Handler "${handlerId}" of plugin "${pluginId}" did not run: ${what}`, { details: { reason: 'runner-lost', phase: 'queued', pluginId, handlerId, message: what } }));
    if (queued.seq < stream.firstSeq || queued.seq > stream.lastSeq) return gone();
    if (stream.created === queued.streamCreated) return;
    // Made anew since it went (deleted by hand, lost with its server): another host's task may hold its sequence there now.
    void this.#link.holdsTask(queued).then((held) => {
      if (held) queued.streamCreated = stream.created;
      else if (held === false && !this.#worker) gone();
    });
  }

  /** End it now with `error` (its worker or the connection is lost); a stop's reason wins. */
  fail(error: KnownExecutionError): void {
    // Not started: its task would take a place in the stream (queueBound) for nothing.
    if (!this.#worker && this.#queued) this.#link.deleteTask(this.#queued);
    this.#finish(undefined, error);
  }

  /** Fail it with `error` and stop it on its worker, whose slot would stay taken until the answer to its next heartbeat. */
  #failThere(error: KnownExecutionError): void {
    this.#toWorker('cancel', encode({ reason: serializeErrorForRunner(error, 'the host') }, 'cancel'));
    this.fail(error);
  }

  /** Its host is shutting down: one no worker has started (or whose start is withdrawn later) is taken off the stream and fails with `reason`. */
  refuseStart(reason: KnownExecutionError): void {
    this.#startRefused = reason;
    if (!this.#worker && this.#settle) this.#stop(reason);
  }

  #lost(what: string): WorkerCrashedError {
    const { pluginId, handlerId } = this.#task;
    return new WorkerCrashedError(`Worker ${shownWorker(this.#worker)} running handler "${handlerId}" of plugin "${pluginId}" ${what}`, {
      details: { reason: 'runner-lost', runnerId: this.#worker?.id, pluginId, handlerId, message: what },
    });
  }

  #stop(reason: KnownExecutionError): void {
    if (!this.#worker) {
      // Not started: take it off the stream; a worker that has it already is refused at its start.
      if (this.#queued) this.#link.deleteTask(this.#queued);
      return this.#finish(undefined, reason);
    }
    // Started: the worker stops it (ctx.signal, then its local backend's stop) and reports its
    // end, with the artifacts; the heartbeat watch bounds the wait. Its input is wanted no more.
    this.#inputSend?.abort();
    this.#toWorker('cancel', encode({ reason: serializeErrorForRunner(reason, 'the host') }, 'cancel'));
  }

  #toWorker(kind: Kind, body: Uint8Array, onRefused?: (refused: TransferRefusedError) => void): void {
    const worker = this.#worker;
    if (!worker) return;
    this.#link.toWorker(worker.id, kind, this.id, body)?.catch((error: unknown) => {
      if (error instanceof TransferRefusedError) onRefused?.(error);
    });
  }

  /** The worker's limit, lower than this host's, refused what this host sent it. */
  #refusedBy(what: string, refused: TransferRefusedError): ValidationError {
    const worker = this.#worker;
    const advice = refused.limit < this.#link.maxPayloadBytes ? ': give hosts and workers the same limit' : '';
    return refused.toValidationError(what, `the limit of worker ${shownWorker(worker)}`, `this host's is ${formatBytes(this.#link.maxPayloadBytes)}`, advice);
  }

  #finish(data: unknown, error?: unknown): void {
    const settle = this.#settle;
    if (!settle) return;
    this.#settle = undefined;
    this.#input = undefined;
    this.#inputSend?.abort();
    this.#session.close();
    const failed = this.#control.stopReason ?? error;
    if (failed !== undefined) settle.reject(failed);
    else settle.resolve(data);
  }
}
