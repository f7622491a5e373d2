import { TimeoutError, WorkerCrashedError, serializeError, type ExecuteOptions, type ExecutionResult, type KnownExecutionError } from '@kb-labs/plugin-execution-core';
import { MAX_TIMER_MS, monotonicNow, wallClockMs } from '@kb-labs/plugin-execution-core/backend-kit';
import { HELD_OUTPUT_BYTES } from '../shared/courier.js';
import { TransferRefusedError } from '../shared/transfer-refused.js';
import { cancelReason, decode, decodeStartedReply, encode, executionKey, formatBytes, readHeaders, taskOfShape, type Kind, type ResultBody, type StartedReply, type TaskBody } from '../shared/wire.js';
import type { Watched } from './caller-watch.js';
import { RemoteCalls } from './remote-calls.js';
import { SentResult } from './sent-result.js';
import { ExecutionOutbox } from './execution-outbox.js';
import { deferredBytes, type DeferredBytes } from './deferred-bytes.js';
import { forgedClaim, pluginRefusal, taskRefusal } from './task-refusal.js';
import { capRefusal } from './worker-cap.js';
import type { TaskMessage } from './task-puller.js';
import type { WorkerServices } from './worker-services.js';

/**
 * The worker's own time limit runs this much past the caller's deadline: it is the backstop for a
 * cancel that never arrives (and clocks a little apart), while the caller's cancel, which comes
 * first, stops the handler the gentle way (ctx.signal, a grace, then the local backend's stop).
 */
const DEADLINE_MARGIN_MS = 1000;
const STARTED_TIMEOUT_MS = 5000;
/** How many deliveries of a task for a plugin it lacks (or has in another version) a worker hands back when no peer has it (see #handsBack). */
const HAND_BACK_TIMES = 4;
const HAND_BACK_DELAY_MS = 250;
/**
 * Between hand-backs of a task that a peer can run (it says it has the version): short, since
 * while the task waits out this delay no worker can take it, a peer with a free slot included.
 */
const WAIT_FOR_PEER_DELAY_MS = 100;

type Claim = { caller: string; lostMs: number; protocol: number };

/**
 * One task on a worker, from the stream message to the result: ask the caller to start it (it
 * runs only if accepted: at most once), acknowledge the message, run it on the local backend with
 * ctx.platform/ctx.channel going back to the caller, stop it on cancel or when its caller is gone,
 * and send the result with what `meta` needs.
 */
export class WorkerExecution implements Watched {
  readonly id: string;
  /** Its task's Nats-Msg-Id (the id and a nonce of the call): a redelivery has the same. */
  readonly taskId: string;
  /** Its caller's subject and its id: what the caller's messages to this worker name it by. */
  readonly key: string;
  readonly #msg: TaskMessage;
  readonly #worker: WorkerServices;
  /** Who asked for it (its caller's subject), how long that caller waits for a silent worker, in which protocol. */
  readonly claim: Claim;
  readonly #abort = new AbortController();
  readonly #calls: RemoteCalls;
  #input: DeferredBytes | undefined;
  /** Logs, events and calls to the caller, in order. */
  readonly #out: ExecutionOutbox;
  /** Its result, once it went as one message: the watch keeps that, not this, until its caller has it. */
  #sent: SentResult | undefined;
  /** The caller's deadline on this worker's monotonic clock (`monotonicNow()`), from its answer to `started`. */
  #deadline = 0;
  /** The caller's accept took long to come back (see #start). */
  #slowStart = false;
  /** Its caller accepted its start (and it acknowledged its task message): `accepted`. */
  #accepted = false;
  /** Why this worker stopped it on its own (its caller went silent, the worker closes, it outran its caller), if it did. */
  #stoppedHere: { message: string; reason: 'runner-lost' | 'protocol' } | undefined;

  /** Settles once its handler is over here (ran, or will not run): what may be left is sending its result. A drain waits for this. */
  readonly handlerOver: Promise<void>;
  #handlerOver!: () => void;

  constructor(msg: TaskMessage, worker: WorkerServices) {
    this.handlerOver = new Promise((resolve) => (this.#handlerOver = resolve));
    this.#msg = msg;
    this.#worker = worker;
    const headers = readHeaders(msg);
    this.id = headers.executionId ?? '';
    this.taskId = headers.msgId ?? '';
    // A task without a protocol header is refused as protocol 0 (taskRefusal).
    this.claim = { caller: headers.reply ?? '', lostMs: Number(headers.lostMs ?? 3000), protocol: Number(headers.protocol ?? 0) };
    this.key = executionKey(this.claim.caller, this.id);
    this.#out = new ExecutionOutbox(worker.courier, this.claim.caller, this.id, { maxPayloadBytes: worker.maxPayloadBytes, worker: worker.identity }, () => this.outpaced());
    this.#calls = new RemoteCalls((message) => {
      // Named as the other backends name it, with where in its arguments a refused value is.
      const what = `${message.target === 'platform' ? `platform.${message.service}.${message.method}` : `ctx.channel.${message.method}`} arguments`;
      // Thrown: the handler's call fails with it (the caller would drop a message this large).
      const bytes = this.#out.encodeWithin(message, what, message.args);
      // Over the caller's own limit (it may be lower than this worker's): the call fails with that.
      this.#out.post('rpc', bytes, (by) => this.#calls.reply({ type: 'rpc-reply', id: message.id, ok: false, error: serializeError(this.#out.refusedBy(what, by)) }));
    });
  }

  /** Claim, run, report. Never rejects. */
  async run(): Promise<void> {
    await this.#claimRunReport().finally(this.#handlerOver);
  }

  async #claimRunReport(): Promise<void> {
    const { caller } = this.claim;
    // Not judged by the task's deadline: this machine's clock may be off the caller's, whose
    // answer to `started` refuses an execution that ran out of time.
    if (forgedClaim(this, this.#worker.subjects)) return this.#worker.forgeries.task(this.#msg);
    // Before its body is read: while its caller is passed over, each of its tasks comes round once.
    if (this.#passesOver(caller)) return;
    // Read once, before the claim (a task for a plugin this worker lacks is handed back); one that
    // cannot be read is claimed and reported.
    let task: TaskBody | undefined;
    let unreadable: unknown;
    try {
      task = taskOfShape(decode(this.#msg.data, 'The task (its input, its context)', `on worker ${this.#worker.identity.id}`), { id: this.id, protocol: this.claim.protocol }, `on worker ${this.#worker.identity.id}`);
    } catch (error) {
      unreadable = error;
    }
    if (task && this.#handsBack(task)) return;
    // An earlier one of its caller under this id runs here (lost to it in a restart): this one waits in the stream.
    if (this.#worker.earlierUnderKey(this)) return void this.#msg.nak(HAND_BACK_DELAY_MS);
    // Its caller sends an input too large for the task right behind its accept, often before this worker has read the accept (see take).
    if (task?.inputFollows) this.#input = deferredBytes();
    const askedAt = monotonicNow();
    if (!(await this.#start(askedAt))) return;
    this.#worker.watch.add(caller, this.claim.lostMs, this, askedAt);
    if (this.#slowStart) this.#worker.watch.beatNow(caller);
    try {
      if (!task) throw unreadable;
      const result = await this.#runTask(task).finally(this.#handlerOver);
      await this.#report(task, result);
    } catch (error) {
      await this.#reportFailure(error);
    } finally {
      // A result sent as one message is watched until its caller has it (SentResult).
      if (this.#sent) this.#worker.watch.ended(caller, this.#sent);
      else this.#worker.watch.delete(caller, this.id);
      this.#calls.close();
    }
  }

  /**
   * A task for a plugin this worker lacks, or has in another version (a rolling upgrade, workers
   * with other plugin folders), or not built here (UnbuiltPlugins), is put back in the stream,
   * unclaimed, for a worker that has it:
   * for as long as another live worker of the pool says it has it (its presence), and otherwise
   * HAND_BACK_TIMES deliveries, HAND_BACK_DELAY_MS apart. After that it is claimed here and fails
   * naming what is wrong (no worker of the pool has it).
   */
  #handsBack(task: TaskBody): boolean {
    // Not built on this machine (none of its entry files here): as if it lacked the plugin.
    const unbuilt = this.#worker.unbuilt.unbuilt(task.pluginId, task.pluginVersion);
    if (!unbuilt && !pluginRefusal(task, this.#worker)) return false;
    // Its version here but not the handler: the peers that say they have that version have that build too.
    const otherVersion = this.#worker.registry.get(task.pluginId)?.manifest.version !== task.pluginVersion;
    if ((otherVersion || unbuilt) && this.#worker.peers.has(task.pluginId, task.pluginVersion)) this.#msg.nak(WAIT_FOR_PEER_DELAY_MS);
    else if (this.#msg.deliveries < HAND_BACK_TIMES) this.#msg.nak(HAND_BACK_DELAY_MS);
    else return false;
    return true;
  }

  /** Its caller did not answer another task's `started` a moment ago, or another task asks it again now (SilentCallers): back to the stream, unasked, until then. */
  #passesOver(caller: string): boolean {
    const waitMs = this.#worker.silentCallers.handBackFor(caller);
    if (waitMs <= 0) return false;
    this.#msg.nak(Math.ceil(waitMs));
    return true;
  }

  /**
   * The caller accepts it (true), or refuses or is gone (the message is terminated or put back).
   * An accept that took the caller's whole patience (`workerLostMs`) is not acted on (the caller
   * may have reported it lost); a slow one (a third of it) is followed at once by a heartbeat.
   */
  async #start(askedAt: number): Promise<boolean> {
    let reply: StartedReply;
    const { lostMs } = this.claim;
    const askMs = Math.min(STARTED_TIMEOUT_MS, lostMs);
    this.#worker.silentCallers.asking(this.claim.caller, askMs);
    try {
      const msg = await this.#worker.courier.request(this.claim.caller, 'started', this.id, encode({ worker: this.#worker.identity, task: this.taskId || undefined }, 'started'), askMs);
      reply = decodeStartedReply(msg.data, `on worker ${this.#worker.identity.id}`);
    } catch (error) {
      // No caller: nobody waits for it. No answer: it may not have heard; another worker may try.
      if ((error as { isNoResponders?: () => boolean })?.isNoResponders?.()) {
        this.#worker.silentCallers.answered(this.claim.caller);
        this.#msg.term();
        return false;
      }
      this.#worker.silentCallers.silent(this.claim.caller);
      // A caller that did hear (late: its event loop was blocked, say) may have accepted it: it
      // reads this right after that `started` (same connection) and takes another worker's. Not when it accepted
      // another delivery of this task here: it knows a start by its worker alone (it would drop the one that runs).
      if (!this.#worker.acceptedHere(this)) void this.#worker.courier.post(this.claim.caller, 'withdrawn', this.id, encode({ worker: this.#worker.identity }, 'withdrawn'))?.catch(() => undefined);
      this.#msg.nak();
      return false;
    }
    this.#worker.silentCallers.answered(this.claim.caller);
    if (!reply.accept) {
      if (reply.retry) this.#msg.nak(HAND_BACK_DELAY_MS);
      else this.#msg.term();
      return false;
    }
    this.#msg.ack();
    this.#accepted = true;
    const tookMs = Math.round(monotonicNow() - askedAt);
    if (tookMs >= lostMs) {
      const why = `its caller's answer to its start took ${tookMs} ms, the caller's whole workerLostMs (${lostMs}): not run, since the caller may have reported it lost`;
      await this.#reportFailure(this.#didNotRun(why));
      return false;
    }
    this.#deadline = monotonicNow() + reply.remainingMs;
    this.#slowStart = tookMs > lostMs / 3;
    return true;
  }

  async #runTask(task: TaskBody): Promise<ExecutionResult> {
    const refusal = taskRefusal(task, { id: this.id, protocol: this.claim.protocol, idTaken: !(await this.#worker.idFreeFor(this)) }, this.#worker);
    if (refusal) throw refusal;
    const bytes = this.#input ? await this.#input.promise : undefined;
    // Stopped while its input was on its way: what stopped it is the answer (lost, if stopped here).
    if (this.#abort.signal.aborted) throw this.#stoppedHere ? this.#stoppedError(task, true) : this.#abort.signal.reason;
    const input = bytes ? decode(bytes, 'The input', `on worker ${this.#worker.identity.id}`) : task.input;
    // Started, then paused (SIGSTOP) past the caller's patience: it has reported this lost.
    if (!this.#worker.watch.answering(this.claim.caller)) throw this.#didNotRun(this.#pausedTooLong());
    const capped = capRefusal(this.#worker.cap, task, this.#worker.registry, this.#worker.identity);
    if (capped) throw capped;
    const backend = await this.#worker.localBackend(task.workspace);
    const options: ExecuteOptions = {
      timeoutMs: Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(this.#deadline - monotonicNow())) + DEADLINE_MARGIN_MS),
      signal: this.#abort.signal,
      keepWorkspace: task.keepWorkspace,
      // The worker's own services here (checked here); every other service to the caller, whose
      // governed gateway checks the call (a refusal is the host's, recorded there).
      platform: this.#worker.platform ?? {},
      platformForward: (service, method, args) => this.#calls.call('platform', service, method, args),
      onLog: (entry) => this.#out.post('log', encode({ level: entry.level, message: entry.message, fields: entry.fields, stream: entry.stream }, 'log fields')),
      onEvent: (event) => this.#out.postEvent(event.event),
      // A caller behind on this worker's output: the handler waits (on a worker-pool or subprocess backend).
      outputPace: () => this.#out.backlog ?? this.#worker.courier.outputWaits(this.claim.caller),
      beginBy: () => this.#beginBy(),
      ...(task.channel ? { channel: { ...task.channel, call: (method: string, args: unknown[]) => this.#calls.call('channel', '', method, args) } } : {}),
      ...(task.traceparent ? { traceparent: task.traceparent } : {}),
    };
    return backend.execute({ pluginId: task.pluginId, handlerId: task.handlerId, input, context: task.context, executionId: task.executionId }, options);
  }

  /** Until when its handler may begin on the local backend (asked at the hand-over, and again by a runner not ready by then): past that, its caller may have reported it lost, and it is stopped here unbegun. */
  #beginBy(): number {
    const by = this.#worker.watch.beginBy(this.claim.caller);
    if (wallClockMs() > by) {
      const error = this.#didNotRun(this.#pausedTooLong());
      this.#stopHere(error.message, 'runner-lost', error);
    }
    return by;
  }

  #pausedTooLong(): string {
    return `it was paused or cut off for longer than its caller's workerLostMs (${this.claim.lostMs}) before the handler began`;
  }

  /** The worker did not run it, for fear its caller has already reported it lost (`why`). */
  #didNotRun(why: string): WorkerCrashedError {
    const { id, host } = this.#worker.identity;
    return new WorkerCrashedError(`Worker ${id} (${host}) did not run execution ${this.id}: ${why}`, { details: { reason: 'runner-lost', message: why, phase: 'queued' } });
  }

  async #report(task: TaskBody, result: ExecutionResult): Promise<void> {
    // Set key by key: on Node 20 an object literal that begins with a spread gets a V8 map of its own each time.
    const meta: ResultBody['meta'] = { artifacts: result.meta.artifacts };
    if (result.meta.artifactsTruncated) meta.artifactsTruncated = true;
    if (result.meta.workspaceDir !== undefined) meta.workspaceDir = result.meta.workspaceDir;
    if (result.meta.pid !== undefined) meta.pid = result.meta.pid;
    if (result.meta.workerId !== undefined) meta.threadId = result.meta.workerId;
    let bytes: Uint8Array;
    try {
      // Outran its caller: some of its output is lost, so not a success even if it finished.
      const outpaced = this.#stoppedHere?.reason === 'protocol' ? this.#stoppedError(task) : undefined;
      const error = outpaced ?? (result.ok ? undefined : this.#asReported(result.error, task));
      const body: ResultBody = error ? { ok: false, error: serializeError(error), meta } : { ok: true, data: (result as { data?: unknown }).data, meta };
      bytes = this.#out.encodeWithin(body, 'handler result', error ? undefined : (result as { data?: unknown }).data, 'result');
    } catch (error) {
      bytes = encode({ ok: false, error: serializeError(error), meta } satisfies ResultBody, 'error');
    }
    await this.#out.sent;
    try {
      await this.#sendResult(bytes);
    } catch (error) {
      if (error instanceof TransferRefusedError) {
        await this.#sendResult(encode({ ok: false, error: serializeError(this.#out.refusedBy('handler result', error)), meta } satisfies ResultBody, 'error')).catch(() => undefined);
        return;
      }
      // A large result cut off halfway (the connection dropped under it): once more, whole, once
      // the connection is back. Its caller drops a second copy if the first did arrive.
      await this.#sendResult(bytes).catch(() => undefined);
    }
  }

  /**
   * The error its caller gets. Stopped here because its caller went silent (a host whose event
   * loop was blocked for longer than workerLostMs, a cut link) or because this worker closes: for
   * the caller, which never aborted it, its worker was lost (WORKER_CRASHED), not ABORTED.
   */
  #asReported(error: KnownExecutionError, task: TaskBody): KnownExecutionError {
    // Stopped before its handler began on the local backend (waiting for a slot, its runner): it never ran.
    if (this.#stoppedHere && error.code === 'ABORTED') return this.#stoppedError(task, error.details?.phase === 'queued');
    return sameLimit(error, task);
  }

  /** `neverRan`: its handler had not begun (docs/errors.md: `phase: 'queued'`, safe to send again). */
  #stoppedError(task: TaskBody, neverRan = false): WorkerCrashedError {
    const { message, reason } = this.#stoppedHere!;
    return new WorkerCrashedError(message, { details: { reason, runnerId: this.#worker.identity.id, pluginId: task.pluginId, handlerId: task.handlerId, message, ...(neverRan ? { phase: 'queued' } : {}) } });
  }

  async #reportFailure(error: unknown): Promise<void> {
    const body: ResultBody = { ok: false, error: serializeError(error), meta: { artifacts: [] } };
    await this.#sendResult(encode(body, 'error')).catch(() => undefined);
  }

  /**
   * Published, not requested: the caller's reply would tell the worker nothing it acts on, and
   * the connection keeps it in order behind the execution's logs and before the next heartbeat
   * (a caller that is gone drops it; a worker that closes drains its connection first). A result
   * larger than one message still goes as acknowledged parts.
   */
  async #sendResult(bytes: Uint8Array): Promise<void> {
    const { courier } = this.#worker;
    const result = new SentResult(this.id, courier, this.claim.caller, bytes, this.#out.tally);
    await result.send();
    // In parts, each answered: the last part's answer says the caller has it.
    if (courier.fitsOneMessage(bytes)) this.#sent = result;
  }

  /** The worker's connection its result went on as one message (SentResult), while the watch still holds this execution. */
  get resultSentOn(): number | undefined {
    return this.#sent?.resultSentOn;
  }

  resendResult(): boolean {
    return this.#sent?.resendResult() ?? false;
  }

  get accepted(): boolean { return this.#accepted; } // prettier-ignore

  /** Its handler's platform and channel calls waiting for their replies. */
  get callsPending(): number {
    return this.#calls.pending;
  }

  /** A message from the caller for this execution: a cancel, a call's reply, the input. */
  take(kind: Kind, body: Uint8Array): void {
    // Kept until the task asks for it; only for a task whose input follows (a peer's for another took the place of its input).
    if (kind === 'input') this.#input?.resolve(body);
    else if (kind === 'rpc-reply') this.#calls.replyWith(body, `on worker ${this.#worker.identity.id}`);
    else if (kind === 'cancel') this.#cancel(cancelReason(body));
  }

  /** The caller stopped it (timeout, abort, shutdown): the local backend stops it as an abort. */
  #cancel(reason: unknown): void {
    this.#abort.abort(reason);
    this.#input?.resolve(new Uint8Array(0));
  }

  /**
   * The connection dropped: calls in flight fail (RemoteCalls.connectionLost). An input on its way
   * (parts lost) is asked for again; one that came is said to have come, as the drop may have
   * taken this worker's answer to its last part, which the caller would wait for in vain.
   */
  connectionLost(): void {
    this.#calls.connectionLost();
    if (!this.#input) return;
    const kind = this.#input.came ? 'input-taken' : 'input-wanted';
    this.#out.post(kind, encode({ worker: this.#worker.identity }, kind));
  }

  orphan(reason: Error): void {
    this.#stopHere(reason.message, 'runner-lost', reason);
  }

  /**
   * Its events came faster than its caller took them, past what the worker holds for a caller
   * (HELD_OUTPUT_BYTES): stopped, as a subprocess that floods its pipe is, and failed
   * (WORKER_CRASHED, `protocol`) rather than reported a success with events lost.
   */
  outpaced(): void {
    const why = `the handler emitted events faster than the calling host read them (more than ${formatBytes(HELD_OUTPUT_BYTES)} of output waited on worker ${this.#worker.identity.id}), so it was stopped`;
    this.#stopHere(why, 'protocol', new WorkerCrashedError(why, { details: { reason: 'protocol', message: why } }));
  }

  #stopHere(message: string, reason: 'runner-lost' | 'protocol', error: Error): void {
    if (this.#stoppedHere) return;
    this.#stoppedHere = { message, reason };
    this.#abort.abort(error);
    this.#input?.resolve(new Uint8Array(0));
  }
}

/** A local TIMEOUT counted from the remaining time is reported with the limit the caller set. */
function sameLimit(error: KnownExecutionError, task: TaskBody): KnownExecutionError {
  if (error.code !== 'TIMEOUT') return error;
  return new TimeoutError(`Handler "${task.handlerId}" of plugin "${task.pluginId}" did not finish within ${task.timeoutMs} ms`, {
    details: { ...error.details, timeoutMs: task.timeoutMs },
  });
}
