import { QueueFullError, ValidationError, WorkerCrashedError } from '@kb-labs/plugin-execution-core';
import { setTimeout as sleep } from 'node:timers/promises';
import { clearInterval, LiveMap, monotonicNow, setInterval, setTimeout, settlesWithin } from '@kb-labs/plugin-execution-core/backend-kit';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { Msg, NatsConnection, Status, Subscription } from '@nats-io/transport-node';
import { closeConnection, connectNats, describeServers, fromPeer, LOGIN_REFUSED, messageOf, notPermitted, PERMISSION_PROBE, refusedAnswer, refusedByServer, refusedByPermissions, confirmSubscriptions, serverAnswers, STREAM_SILENT } from '../shared/connection.js';
import { serverProblem, streamSilence } from '../shared/server-problem.js';
import { Courier, courierPartBytes, maxPayload, partBytes } from '../shared/courier.js';
import { HOST_PARTS, PartsAssembler } from '../shared/parts-assembler.js';
import { checkConsumer, type PoolNeeds } from '../shared/pool-consumer.js';
import { StreamTasks, type QueuedTask } from './stream-tasks.js';
import { serverSilence } from './server-silence.js';
import { ensureStream, PoolStreamError, publishToStream, storageProblem, warnBoundHeld, type PoolStream } from '../shared/pool-stream.js';
import { PoolSubjects } from '../shared/subjects.js';
import { fullQueue, handOverBound, notHandedOver, PUBLISH_TIMEOUT_MS } from './publish-refusal.js';
import { decode, encode, readHeaders, taskHeaders, type HeartbeatBody, type Kind, type WorkerIdentity } from '../shared/wire.js';
import { readPresence } from '../shared/presence.js';
import type { ResolvedQueueOptions } from './options.js';
import type { ExecutionLink } from './execution-link.js';
import type { RemoteExecution } from './remote-execution.js';
import { WorkerDirectory } from './worker-directory.js';
import { Reconnection } from './reconnection.js';
import { StreamReads } from './stream-reads.js';
import { deliver, namedOnce } from './worker-message.js';

export type ConnectionState = 'connected' | 'reconnecting' | 'closed';

/** A task no stream took ("no responders": nothing stored) is offered again this often, within the hand-over's bound. */
const NO_STREAM_RETRY_MS = 250;

/**
 * One host's connection to its pool: the stream it publishes tasks to, its caller subject (where
 * workers report), the pool's presence, and the watch over running executions' heartbeats.
 */
export class HostLink implements ExecutionLink {
  readonly executions = new LiveMap<RemoteExecution>();
  readonly workers: WorkerDirectory;
  /** Why the pool's stream does not keep tasks as `streamStorage` asks (health() says it). */
  storageProblem: string | undefined;
  /** Why the pool's stream cannot be used, as last checked (health() says it); undefined when it can. */
  streamProblem: string | undefined;
  /** The pool's stream did not answer its last read, the connection up (its server down, a cluster without quorum): health() and a TIMEOUT say it. */
  streamSilence: string | undefined;
  /** What the server refused this host's user, last (health() says it): a task's publish until one goes, answers to workers for good. */
  permissionProblem: string | undefined;
  readonly maxPayloadBytes: number;
  /** The largest body one message carries now (the server reconnected to may have another max_payload). */
  get partBytes(): number { return partBytes(this.#nc); } // prettier-ignore
  /** The largest input a task message carries itself; a larger one follows in the courier's parts, so that no message holds a slow link (and the heartbeats behind it) for long. */
  get inlineInputBytes(): number { return courierPartBytes(this.#nc); } // prettier-ignore
  readonly workerLostMs: number;
  readonly workspace: boolean;
  readonly subjects: PoolSubjects;
  state: ConnectionState = 'connected';
  #loginRefused: string | undefined; // the server's refusal of this host's login as it reconnects (a password changed under it)
  readonly #o: ResolvedQueueOptions;
  readonly #nc: NatsConnection;
  readonly #jsm: JetStreamManager;
  readonly #courier: Courier;
  readonly #callerSubject: string;
  readonly #parts: PartsAssembler;
  readonly #subscriptions: Subscription[] = [];
  readonly #watch: NodeJS.Timeout;
  /** How often it watches heartbeats and pings the server. */
  readonly watchEveryMs: number;
  #lastWatch = monotonicNow();
  /** The pool's stream as last read (see checkStream). */
  #stream: PoolStream | undefined;
  readonly #tasks: StreamTasks;
  /** When the ping this host has out to the server went; undefined while none is unanswered. */
  #pingSentAt: number | undefined;
  /** A subscription the server refused (see confirmSubscriptions). */
  #refused: Error | undefined;
  /** What waits for the connection to come back (once the stream is there again). */
  readonly #reconnection = new Reconnection();
  readonly #reads = new StreamReads(() => this.#reconnection.drops);

  private constructor(o: ResolvedQueueOptions, nc: NatsConnection, jsm: JetStreamManager, hostId: string) {
    this.#o = o;
    this.#nc = nc;
    this.#jsm = jsm;
    this.subjects = new PoolSubjects(o.subjectPrefix, o.pool);
    this.#tasks = new StreamTasks(jsm, this.subjects.stream);
    this.#callerSubject = this.subjects.caller(hostId);
    this.#courier = new Courier(nc, this.#callerSubject);
    this.maxPayloadBytes = o.maxPayloadBytes;
    this.workerLostMs = o.workerLostMs;
    this.workspace = o.workspace;
    this.workers = new WorkerDirectory(o.workerLostMs);
    this.#parts = new PartsAssembler(o.maxPayloadBytes, HOST_PARTS);
    this.#subscriptions.push(
      nc.subscribe(this.#callerSubject, { callback: (error, msg) => void (error ?? (fromPeer(msg) && this.#fromWorker(msg))) }),
      nc.subscribe(this.subjects.presence, { callback: (error, msg) => void (error ?? this.#presence(msg)) }),
    );
    this.watchEveryMs = Math.max(25, Math.min(o.heartbeatMs, Math.floor(o.workerLostMs / 3)));
    this.#watch = setInterval(() => this.#watchHeartbeats(), this.watchEveryMs);
    this.#watch.unref();
    void this.#watchStatus();
  }

  /** Connect, make sure the pool's stream exists with this host's bound, start listening. */
  static async open(o: ResolvedQueueOptions, hostId: string, wanted: () => boolean): Promise<HostLink> {
    const subjects = new PoolSubjects(o.subjectPrefix, o.pool);
    const nc = await connectNats(o.connection, `kb-plugin-exec host ${hostId}`, subjects.inbox('host'), wanted);
    try {
      // Its backend shut down while it was being made: closed as it opens, making nothing on the server (the pool's stream).
      if (!wanted()) throw new Error('the queue backend was shut down while its first connection was being made');
      const jsm = await jetstreamManager(nc);
      const stream = await ensureStream(jsm, subjects, { maxMessages: o.queueBound, maxMessageBytes: maxPayload(nc), storage: o.streamStorage, replicas: o.streamReplicas }, 'host');
      const link = new HostLink(o, nc, jsm, hostId);
      // What it publishes besides tasks (to workers, and the presence query), refused at once if not permitted.
      nc.publish(subjects.worker(PERMISSION_PROBE));
      nc.publish(subjects.presenceQuery);
      // Refused (over the server's max_subscriptions, not permitted): no result would ever reach this host.
      await confirmSubscriptions(nc, () => link.#refused).catch(async (error: unknown) => {
        await link.close();
        throw error;
      });
      link.#stream = stream;
      link.storageProblem = storageProblem(subjects, o.streamStorage, stream.storage);
      link.streamProblem = await checkConsumer(jsm, subjects, link.#poolNeeds(stream));
      if (link.storageProblem) process.emitWarning(link.storageProblem, { code: 'KB_PLUGIN_QUEUE_STORAGE' });
      warnBoundHeld(subjects, stream);
      return link;
    } catch (error) {
      const connectedTo = nc.getServer();
      await closeConnection(nc);
      // Connected, but the stream does not answer: not "could not connect … timeout".
      throw STREAM_SILENT.test(messageOf(error)) ? serverProblem('The queue backend', o.connection, error, connectedTo) : error;
    }
  }

  /** Put a task in the stream; `encode` makes its body for the server connected to when it goes (its max_payload may have changed in a reconnection). */
  async publishTask(executionId: string, taskId: string, encode: () => Uint8Array): Promise<QueuedTask> {
    // Known to be unusable (made by hand with other settings): said at once, not as a TIMEOUT. Read again first: it may be fixed since.
    if (this.streamProblem) await this.checkStream();
    if (this.streamProblem) {
      throw new WorkerCrashedError(`The queue backend cannot use pool "${this.#o.pool}": ${this.streamProblem}`, { details: { reason: 'runner-lost', phase: 'queued', message: this.streamProblem } });
    }
    const headers = taskHeaders(executionId, this.#callerSubject, this.workerLostMs);
    let ack;
    let retried = false;
    let unanswered = 0;
    // One bound for the whole hand-over, the waits for a reconnection and the retry included (not its turn at the gate).
    const replicated = this.#replicated();
    const handOverMs = handOverBound(replicated);
    let giveUpAt = monotonicNow() + handOverMs;
    const left = () => Math.max(1, Math.round(giveUpAt - monotonicNow()));
    for (;;) {
      // Reconnecting: the task waits for the connection (and the stream made again); published meanwhile, nats.js would drop it.
      while (this.state === 'reconnecting' && left() > 1) await this.#reconnection.wait(left());
      if (this.state === 'reconnecting') throw this.#notHandedOver(`the connection to it has been down for the ${handOverMs} ms a task waits to be handed over${this.#refusalSaid()}; nothing ran`);
      const body = encode();
      // Tasks with inputs just under a part each, many at once, would queue megabytes ahead of this host's heartbeat answers on a slow link.
      const turnFrom = monotonicNow();
      if (this.#courier.gate.gates(body.length)) await this.#courier.gate.admit(body.length);
      giveUpAt += monotonicNow() - turnFrom;
      try {
        ack = await publishToStream(this.#courier.replies, this.subjects.tasks, body, { msgId: taskId, headers, timeout: Math.min(PUBLISH_TIMEOUT_MS, left()) });
        if (this.permissionProblem?.includes(this.subjects.tasks)) this.permissionProblem = undefined;
        break;
      } catch (error) {
        const failure = this.#publishError(error);
        if (failure instanceof QueueFullError) throw failure;
        // No stream took it (nothing stored): deleted, made again first; or its server restarts (a cluster's stream leader), tried again within the bound.
        if (/no responders/i.test(messageOf(error)) && left() > NO_STREAM_RETRY_MS) {
          if (unanswered++) await sleep(NO_STREAM_RETRY_MS);
          await settlesWithin(this.checkStream(), left());
          continue;
        }
        // Lost in a reconnection: once more (a copy that did land is dropped by its msgID, and said so);
        // a replicated stream electing its leader answers no publish meanwhile: again within the bound.
        if (retried && !(replicated && left() > NO_STREAM_RETRY_MS)) throw failure;
        retried = true;
      }
    }
    return { seq: ack.seq, taskId, streamCreated: this.#stream?.created };
  }

  #publishError(error: unknown): Error {
    // QUEUE_FULL's details: the stream's bound, this host's executions, the slots of the workers it knows.
    const details = { maxQueue: this.queueBound, active: this.executions.size, concurrency: this.workers.alive().reduce((n, w) => n + w.concurrency, 0) };
    const full = fullQueue(error, { pool: this.#o.pool, stream: this.subjects.stream, queueBound: this.queueBound, maxBytes: this.#stream?.maxBytes ?? -1, details });
    if (full) return full;
    if (notPermitted(error)) this.permissionProblem = `its NATS user may not publish the pool's tasks (${messageOf(error)}); docs/backends/queue.md, "Security", lists the subjects`;
    return this.#notHandedOver(error);
  }

  #notHandedOver(error: unknown): WorkerCrashedError {
    return notHandedOver(error, { servers: describeServers(this.#o.connection), waitedMs: handOverBound(this.#replicated()), streamProblem: this.streamProblem ?? this.streamSilence });
  }

  /** A stream with copies (the host's streamReplicas, or a stream made with more): its hand-over gets the longer bound (handOverBound). */
  #replicated(): boolean {
    return Math.max(this.#o.streamReplicas, this.#stream?.replicas ?? 1) > 1;
  }

  /** Take a task off the stream (StreamTasks); while the connection is down, once it is back. */
  deleteTask(task: QueuedTask): void { this.#tasks.delete(task, this.state === 'connected'); } // prettier-ignore
  holdsTask(task: QueuedTask): Promise<boolean | undefined> { return this.#tasks.holds(task); } // prettier-ignore

  workerSeenAt(worker: WorkerIdentity): number | undefined {
    return this.workers.seenAt(worker);
  }

  toWorker(workerId: string, kind: Kind, executionId: string, body: Uint8Array, signal?: AbortSignal): Promise<void> | undefined {
    return this.#courier.post(this.subjects.worker(workerId), kind, executionId, body, { signal });
  }

  /** When the stream was last read (`monotonicNow()`; see checkStream). */
  streamReadAt: number | undefined;
  /** Tasks waiting in the stream, as last read (see checkStream). */
  get queueDepth(): number | undefined {
    return this.#stream?.messages;
  }

  /** The stream's bound as last read: this host's `queueBound`, unless a host that started later set another. */
  get queueBound(): number {
    return this.#stream?.maxMessages ?? this.#o.queueBound;
  }

  /**
   * Read the pool's stream (one read at a time, only while connected): its depth and bound, and
   * whether it is still there and usable. Gone (deleted, a server restarted without its store),
   * it is made again with this host's settings; made again by a worker meanwhile, this host's
   * settings replace the worker's defaults. What is wrong is kept for health().
   */
  checkStream(): Promise<void> {
    if (this.state !== 'connected') return Promise.resolve();
    return this.#reads.run((sameLink) => this.#readStream(sameLink));
  }

  /** One read of the stream (checkStream); `sameLink()`: no drop since it began. */
  #readStream(sameLink: () => boolean): Promise<void> {
    const readAt = monotonicNow();
    return this.#tasks.settled() // (a stopped execution's task is not read as waiting still)
      .then(() => ensureStream(this.#jsm, this.subjects, { maxMessages: this.#o.queueBound, maxMessageBytes: maxPayload(this.#nc), storage: this.#o.streamStorage, replicas: this.#o.streamReplicas }, 'host-check'))
      .then(
        async (stream) => {
          this.#stream = stream;
          this.streamSilence = undefined;
          this.streamReadAt = monotonicNow();
          for (const execution of this.executions.values()) execution.checkInStream(stream, readAt);
          this.storageProblem = storageProblem(this.subjects, this.#o.streamStorage, stream.storage);
          this.streamProblem = await checkConsumer(this.#jsm, this.subjects, this.#poolNeeds(stream));
        },
        async (error: unknown) => {
          // Only what stays wrong until someone fixes it; a read that timed out says nothing.
          if (error instanceof PoolStreamError) this.streamProblem = error.message;
          else if (refusedByServer(error)) this.streamProblem = serverProblem('The queue backend', this.#o.connection, error).message;
          // Unless it says nothing for as long as a read waits while the server answers pings: its server down, a cluster without quorum (not this host's link, nor a read its drop took).
          else if (this.state === 'connected' && sameLink() && STREAM_SILENT.test(messageOf(error)) && (await serverAnswers(this.#nc)) && sameLink()) this.streamSilence = streamSilence('The queue backend', this.server, messageOf(error));
        },
      );
  }

  /** What the pool's consumer must allow: the stream's bound, and the largest pull of a worker this host knows. */
  #poolNeeds(stream: PoolStream): PoolNeeds {
    return { maxMessages: stream.maxMessages, largestPull: Math.max(1, ...this.workers.alive().map((w) => w.concurrency)), maxConsumers: stream.maxConsumers, consumers: stream.consumers };
  }

  /** How long the server has left this host's last ping unanswered (0: it answered). */
  serverSilentMs(now: number): number {
    return this.#pingSentAt === undefined ? 0 : now - this.#pingSentAt;
  }

  /** Why the server does not answer a ping within `waitMs`, if it does not (for health()). */
  serverSilence(waitMs: number): Promise<string | undefined> {
    return serverSilence(this.#nc, this.server, () => this.serverSilentMs(monotonicNow()), waitMs);
  }

  get server(): string {
    return this.#nc.getServer();
  }

  /** What health() and an unstarted execution's TIMEOUT say of the connection while it is not up (and why, when the server refuses the login). */
  get connectionProblem(): string {
    return `the connection to the NATS server is ${this.state}${this.#refusalSaid()}`;
  }

  #refusalSaid(): string {
    return this.#loginRefused === undefined || this.state !== 'reconnecting' ? '' : `: the server refuses this host's login as it reconnects (${this.#loginRefused}); it keeps trying: check the server's users and connection.user/pass, token, seed or credsFile`;
  }

  /** Close the connection and every timer and subscription; executions still here fail. */
  async close(): Promise<void> {
    clearInterval(this.#watch);
    this.state = 'closed';
    this.#reconnection.release();
    this.#failAll('closed its connection to the NATS server (shutdown)');
    for (const sub of this.#subscriptions) sub.unsubscribe();
    await this.#tasks.settled(); // the tasks of executions stopped just before (those no worker started, at shutdown) go off the stream first
    await closeConnection(this.#nc);
  }

  #fromWorker(msg: Msg): void {
    const headers = readHeaders(msg);
    const executionId = headers.executionId ?? '';
    try {
      // Any word from its worker (a part of a large result: heartbeats wait behind those on a slow link) says it is there.
      const execution = this.executions.get(executionId);
      execution?.heard();
      const body = this.#parts.take(msg, headers, execution ? executionId : undefined);
      if (body) this.#route(headers.kind ?? '', executionId, body, msg, headers.outputSent);
    } catch (error) {
      // A start, or a message for an execution a worker started, that this host cannot read (a value of a newer Node) fails it saying so; any
      // other is dropped (before its start, it is of another execution under its id, as one read is: accepted; a silent worker: its watch).
      const execution = this.executions.get(executionId);
      if (execution && (execution.accepted || headers.kind === 'started') && error instanceof ValidationError) execution.unreadable(error);
      if (msg.reply) msg.respond();
    }
  }

  #route(kind: string, executionId: string, body: Uint8Array, msg: Msg, outputSent: string | undefined): void {
    if (kind === 'heartbeat') return void this.#heartbeat(decode<HeartbeatBody>(body), msg);
    const found = this.executions.get(executionId);
    const execution = found?.accepted || kind === 'started' || kind === 'withdrawn' || kind === 'input-wanted' ? found : undefined;
    deliver(kind, execution, body, msg, outputSent);
  }

  #heartbeat(body: HeartbeatBody, msg: Msg): void {
    const unknown = namedOnce(body.executions).filter((id) => !this.executions.get(id)?.heartbeat(body.worker));
    msg.respond(encode({ unknown }, 'reply'));
  }

  #presence(msg: Msg): void {
    const presence = readPresence(msg.data);
    if (presence) this.workers.take(presence);
  }

  /** One ping at a time, each watch tick: a silent server is noticed within a tick or two. */
  #pingServer(now: number): void {
    if (this.#pingSentAt !== undefined || this.state !== 'connected') return;
    this.#pingSentAt = now;
    const answered = () => (this.#pingSentAt = undefined);
    this.#nc.flush().then(answered, answered);
  }

  #watchHeartbeats(): void {
    const now = monotonicNow();
    // This process was busy (or paused) past a tick: heartbeats may be waiting in its socket. Judge after they were read.
    const late = now - this.#lastWatch > 2 * this.watchEveryMs;
    this.#lastWatch = now;
    if (late) return;
    // Silent for more than a tick: the link between this host and the server may be cut, in
    // which case the workers' silence is not theirs (their message says so).
    const silentFor = this.serverSilentMs(now);
    const silentMs = silentFor > this.watchEveryMs ? silentFor : 0;
    for (const execution of this.executions.values()) execution.checkLost(now, silentMs);
    this.#pingServer(now);
    this.#parts.sweep(this.workerLostMs * 2);
    if (this.#reads.due(now)) void this.checkStream();
  }

  /** A lost connection fails what is in flight (clearly, at once); the reconnection serves new executions. */
  async #watchStatus(): Promise<void> {
    for await (const status of this.#nc.status()) {
      this.#refused ??= refusedByPermissions(status);
      this.#answersRefused(status);
      if (status.type === 'error' && LOGIN_REFUSED.test(messageOf(status.error))) this.#loginRefused = messageOf(status.error);
      if (status.type === 'disconnect' && this.state === 'connected') {
        this.state = 'reconnecting';
        this.#reconnection.dropped();
        this.#failAll(`lost its connection to the NATS server (${status.server}) while the execution was in flight`);
      } else if (status.type === 'reconnect') {
        if (this.state === 'reconnecting') this.state = 'connected';
        this.#loginRefused = undefined;
        // A server that restarted without its store has lost the stream. Not awaited here: a drop during the read is one at once.
        void this.#reconnection.back(() => this.checkStream(), () => this.#tasks.reconnected());
        if (!this.#nc.isClosed()) this.#nc.publish(this.subjects.presenceQuery); // (closed meanwhile, a publish would throw)
      } else if (status.type === 'close') {
        this.state = 'closed';
      }
    }
  }

  /**
   * The server refused an answer of this host's to a worker's request (its `started`, which
   * comes from the worker's inbox): the user lacks `allow_responses`. No execution can start, so
   * those in flight fail now, saying why, not at their time limits; health() says it too.
   */
  #answersRefused(status: Status): void {
    const refused = refusedAnswer(status);
    if (!refused) return;
    const what = `cannot answer the workers' requests: its NATS user may not publish to their inboxes (${refused.message}); give it allow_responses (docs/backends/queue.md, "Security")`;
    this.permissionProblem = what;
    this.#failAll(what);
  }

  #failAll(what: string): void {
    for (const execution of this.executions.values()) {
      const worker = execution.worker;
      execution.fail(
        new WorkerCrashedError(`The host ${what}${worker ? ` on worker ${worker.id}` : ' (not started yet)'}`, {
          details: { reason: 'runner-lost', message: what, ...(worker ? { runnerId: worker.id } : { phase: 'queued' as const }) },
        }),
      );
    }
  }
}
