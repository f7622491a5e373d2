import os from 'node:os';
import { PluginRegistry, ShuttingDownError, type PermissionSpec } from '@kb-labs/plugin-execution-core';
import { clearInterval, clearTimeout, setInterval, setTimeout, settlesWithin, shownControls } from '@kb-labs/plugin-execution-core/backend-kit';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { closeConnection, connectNats, fromPeer, messageOf, PERMISSION_PROBE, refusedByServer, refusedByPermissions, confirmSubscriptions, serverAnswers, STREAM_SILENT } from '../shared/connection.js';
import { serverProblem } from '../shared/server-problem.js';
import { Courier, maxPayload, partBytes } from '../shared/courier.js';
import { answeredByTake, PartsAssembler, workerParts } from '../shared/parts-assembler.js';
import { ensureConsumer } from '../shared/pool-consumer.js';
import { ensureStream, PoolStreamError } from '../shared/pool-stream.js';
import { PoolSubjects } from '../shared/subjects.js';
import { encode, executionKey, readHeaders, type Kind, type PresenceBody, type WorkerIdentity } from '../shared/wire.js';
import { readPresence } from '../shared/presence.js';
import { CallerWatch } from './caller-watch.js';
import { ConnectionNotices } from './connection-notices.js';
import { checkDrainOptions } from './drain-options.js';
import { CONNECTION_DRAIN_MS, untilStoppedReported } from './stopped-reports.js';
import { PeerForgeries } from './peer-forgeries.js';
import { PeerPlugins } from './peer-plugins.js';
import { UnbuiltPlugins } from './unbuilt-plugins.js';
import { localBackends, type LocalBackends } from './local-backend.js';
import { TaskPuller, type TaskMessage } from './task-puller.js';
import { SilentCallers } from './silent-callers.js';
import { WorkerExecution } from './worker-execution.js';
import { WorkerExecutions } from './worker-executions.js';
import type { WorkerServices } from './worker-services.js';
import { refuseUnusableWorkspaceRoot, resolveWorkerOptions, type ExecutionWorkerOptions, type ResolvedWorkerOptions } from './worker-options.js';

export type { ExecutionWorkerOptions, LocalBackendOptions, SetByTheWorker } from './worker-options.js';

import type { ExecutionWorker } from './execution-worker.js';
export type { ExecutionWorker } from './execution-worker.js';

/** JetStream's API subjects (the default prefix, as `jetstreamManager()` uses). */
const JS_API = '$JS.API';

/** A large input none of whose parts came for this long is dropped (its caller has given up on it). */
const PARTS_IDLE_MS = 60_000;

/**
 * Start a worker: it takes tasks of `pool` from NATS JetStream, as many at once as `concurrency`,
 * and runs each on its local backend (`backend.type`), whose isolation holds here. Plugin folders
 * are loaded (and checked) before it takes anything; every option, the local backend's included
 * (which that backend checks as it is made), before it makes its workspace root or connects.
 */
export async function startExecutionWorker(options: ExecutionWorkerOptions): Promise<ExecutionWorker> {
  const o = resolveWorkerOptions(options);
  const registry = new PluginRegistry();
  await registry.addAll(o.plugins);
  // Its options checked (by its constructor) before the workspace root is made and the server reached.
  const backends = await localBackends(o.backend, registry, { workspace: o.workspace, concurrency: o.concurrency });
  let nc: NatsConnection;
  try {
    await refuseUnusableWorkspaceRoot(o);
    nc = await connectNats(o.connection, `kb-plugin-exec worker ${o.id}`, new PoolSubjects(o.subjectPrefix, o.pool).inbox('worker')).catch((error: unknown) => {
      throw serverProblem('The worker', o.connection, error);
    });
  } catch (error) {
    await backends.shutdown(1000);
    throw error;
  }
  let worker: QueueWorker | undefined;
  try {
    const jsm = await jetstreamManager(nc);
    worker = new QueueWorker(o, registry, backends, nc, jsm);
    await worker.start();
    return worker;
  } catch (error) {
    // Connected, but the stream does not answer (its server down, a cluster without quorum): said so, not as a bare nats.js "timeout".
    const connectedTo = nc.getServer();
    worker?.abandon();
    await Promise.all([closeConnection(nc), backends.shutdown(1000)]);
    throw refusedByServer(error) || error instanceof PoolStreamError || STREAM_SILENT.test(messageOf(error)) ? serverProblem('The worker', o.connection, error, connectedTo) : error;
  }
}

class QueueWorker implements ExecutionWorker {
  readonly id: string;
  readonly host = os.hostname();
  readonly closed: Promise<void>;
  readonly #o: ResolvedWorkerOptions;
  readonly #nc: NatsConnection;
  readonly #jsm: JetStreamManager;
  readonly #subjects: PoolSubjects;
  readonly #services: WorkerServices;
  readonly #backends: LocalBackends;
  /** Executions here, by caller and id (executionKey), in the order they came. */
  readonly #executions = new WorkerExecutions();
  readonly #parts: PartsAssembler;
  readonly #puller: TaskPuller;
  readonly #subscriptions: Subscription[] = [];
  /** The consumer's next-message subject, once the stream and consumer are known to exist. */
  #pullSubject: Promise<string> | undefined;
  #presenceTimer: NodeJS.Timeout | undefined;
  #isolation: PresenceBody['isolation'];
  /** Another worker of the pool with this one's id was seen (and the process warned). */
  #twinSeen = false;
  /** A subscription the server refused (see confirmSubscriptions). */
  #refused: Error | undefined;
  #running = 0;
  /** start() is over: what fails from now on is said as a notice, and tried again. */
  #serving = false;
  /** Disconnected (reconnecting): what executions have to report waits for the server. `#onLinkDown`: called at the next disconnect (drain). */
  #linkDown = false;
  #onLinkDown: Array<() => void> = [];
  #idle: (() => void) | undefined;
  readonly #notices: ConnectionNotices;
  #closing: Promise<void> | undefined;
  #draining: Promise<void> | undefined;
  #abandoned = false;
  #markClosed!: () => void;

  constructor(o: ResolvedWorkerOptions, registry: PluginRegistry, backends: LocalBackends, nc: NatsConnection, jsm: JetStreamManager) {
    this.id = o.id;
    this.#o = o;
    this.#nc = nc;
    this.#jsm = jsm;
    this.#backends = backends;
    this.#subjects = new PoolSubjects(o.subjectPrefix, o.pool);
    this.#parts = new PartsAssembler(o.maxPayloadBytes, workerParts((key) => this.#executions.callsPending(key)));
    this.#notices = new ConnectionNotices(o.id, o.connection, () => nc.getServer(), () => serverAnswers(nc));
    const identity: WorkerIdentity = { id: o.id, host: this.host, pid: process.pid };
    // A part of a large result that its caller took says the caller is there, as an answer to a heartbeat does.
    const courier = new Courier(nc, undefined, {
      onPartTaken: (caller) => this.#services.watch.heard(caller),
      // Its handler outran its caller by more than the worker holds: stopped, not its output lost.
      onOutpaced: (caller, executionId) => this.#executions.forKey(executionKey(caller, executionId), (execution) => execution.outpaced()),
    });
    this.#services = {
      identity,
      courier,
      watch: new CallerWatch(courier, o.id, o.heartbeatMs),
      registry,
      peers: new PeerPlugins(o.id, o.heartbeatMs),
      unbuilt: new UnbuiltPlugins(registry),
      silentCallers: new SilentCallers(),
      forgeries: new PeerForgeries(o.id),
      cap: o.backend.permissions as PermissionSpec | undefined,
      platform: o.platform,
      subjects: this.#subjects,
      maxPayloadBytes: o.maxPayloadBytes,
      localBackend: async (workspace) => this.#backends.get(workspace),
      idFreeFor: async (execution) => {
        const first = this.#executions.values().find((each) => each.id === execution.id);
        // Under its own key: itself, or another delivery of its own task here, whose start its caller did not accept (it accepted this one).
        return first === undefined || first.key === execution.key || (await this.#services.watch.freed(first));
      },
      earlierUnderKey: (execution) => [this.#executions.first(execution.key)].some((first) => first && first !== execution && first.taskId !== execution.taskId),
      acceptedHere: (execution) => this.#executions.acceptedOther(execution),
    };
    this.#puller = new TaskPuller(
      nc,
      () => this.#nextSubject(),
      () => (this.#pullSubject = undefined),
      () => this.#o.concurrency - this.#running,
      (msg) => this.#take(msg),
    );
    this.closed = new Promise((resolve) => (this.#markClosed = resolve));
  }

  get running(): number {
    return this.#running;
  }

  async start(): Promise<void> {
    void this.#watchStatus();
    const next = await this.#nextSubject();
    // Made now: the first execution does not pay for it, and presence can say what isolation handlers get (and what is built).
    const [{ isolation, problems }] = await Promise.all([this.#backends.get(true).health(), this.#services.unbuilt.refresh()]);
    this.#isolation = { active: isolation.active, layers: isolation.layers, reason: isolation.reason };
    // A plugin not built, a sandbox not available: said before it takes work, not at each task.
    if (problems.length) process.emitWarning(`Worker ${this.id} starts with problems its executions will meet: ${problems.join('; ')}`, { code: 'KB_PLUGIN_WORKER_PROBLEMS' });
    this.#subscriptions.push(
      this.#nc.subscribe(this.#subjects.worker(this.id), { callback: (error, msg) => void (error ?? (fromPeer(msg) && this.#fromCaller(msg))) }),
      this.#nc.subscribe(this.#subjects.presenceQuery, { callback: () => this.#announce() }),
      this.#nc.subscribe(this.#subjects.presence, { callback: (error, msg) => void (error ?? this.#presence(msg)) }),
    );
    this.#services.peers.listening();
    this.#puller.subscribe();
    // What it publishes besides acks and results (a claim, its presence, the presence query that has
    // the others say their plugin versions now: PeerPlugins), refused at once if not permitted.
    this.#nc.publish(this.#subjects.caller(PERMISSION_PROBE));
    // And its pulls: a pull request with no reply subject is one JetStream drops unread.
    this.#nc.publish(next);
    this.#announce();
    this.#nc.publish(this.#subjects.presenceQuery);
    // Refused (over the server's max_subscriptions, not permitted): it would say "ready" and never take a task.
    await confirmSubscriptions(this.#nc, () => this.#refused);
    this.#presenceTimer = setInterval(() => {
      this.#announce();
      void this.#services.unbuilt.refresh();
      // Large inputs whose caller went quiet halfway (a reset link) are not kept for ever.
      this.#parts.sweep(PARTS_IDLE_MS);
    }, this.#o.heartbeatMs);
    this.#puller.topUp();
    this.#serving = true;
  }

  /** The pool's consumer's next-message subject, the consumer made (with the stream, if no host made it yet) when missing. */
  #nextSubject(): Promise<string> {
    if (this.#pullSubject) return this.#pullSubject;
    const epoch = this.#notices.linkEpoch;
    this.#pullSubject = (async () => {
      const stream = await ensureStream(this.#jsm, this.#subjects, { maxMessages: 1000, maxMessageBytes: maxPayload(this.#nc), storage: 'memory' }, 'worker');
      await ensureConsumer(this.#jsm, this.#subjects, { maxMessages: stream.maxMessages, largestPull: this.#o.concurrency, maxConsumers: stream.maxConsumers, consumers: stream.consumers });
      return `${JS_API}.CONSUMER.MSG.NEXT.${this.#subjects.stream}.${this.#subjects.consumer}`;
    })();
    // Failed (no server, no JetStream yet): the next pull tries again.
    this.#pullSubject.then(
      () => this.#notices.streamReady(),
      (error: unknown) => {
        this.#pullSubject = undefined;
        // At start the failure is start()'s own (it rejects, naming the problem): no "it tries again".
        if (this.#serving) this.#notices.streamFailed(error, epoch);
      },
    );
    return this.#pullSubject;
  }

  #take(msg: TaskMessage): void {
    const execution = new WorkerExecution(msg, this.#services);
    this.#running++;
    this.#executions.add(execution);
    // run() never rejects. Should it (a plugin on an in-process worker broke a global the worker
    // uses), the worker is broken: it drains and closes, for its supervisor to start it anew.
    void execution.run().catch((error: unknown) => this.#broken(execution, error)).finally(() => {
      this.#running--;
      this.#executions.delete(execution);
      if (this.#running === 0) this.#idle?.();
      this.#puller.topUp();
    });
  }

  #broken(execution: WorkerExecution, error: unknown): void {
    process.emitWarning(`Worker ${this.id}: execution ${execution.id} failed in the worker itself (${String(error)}): it takes nothing more, and closes once what runs is done`, { code: 'KB_PLUGIN_WORKER_INTERNAL' });
    void this.drain();
  }

  #fromCaller(msg: Msg): void {
    // A part that completes no body is answered by take(): answered here too, its sender got a second answer, for nothing.
    let answered = false;
    try {
      const headers = readHeaders(msg);
      const caller = headers.reply ?? '';
      // Any word from a caller, a part of a large input included, says it is there.
      this.#services.watch.heard(caller);
      const key = executionKey(caller, headers.executionId ?? '');
      const body = this.#parts.take(msg, headers, this.#executions.first(key) ? key : undefined);
      answered = answeredByTake(headers, body);
      // Each delivery of its task here: the caller's message is for the one it accepted.
      if (body) this.#executions.forKey(key, (execution) => execution.take((headers.kind ?? '') as Kind, body));
    } catch {
      this.#services.forgeries.message();
    }
    if (msg.reply && !answered) msg.respond();
  }

  /** Another worker's presence: which plugin versions it has (PeerPlugins), and whether it has this worker's id. */
  #presence(msg: Msg): void {
    const presence = readPresence(msg.data);
    if (!presence) return;
    this.#services.peers.saw(presence);
    this.#checkTwin(presence);
  }

  /**
   * Two workers of one id (a fixed `id` given to both) both get what hosts send that id, and
   * hosts count them as one: said once, as a process warning, on each of them.
   */
  #checkTwin(presence: PresenceBody): void {
    if (this.#twinSeen) return;
    if (presence.id !== this.id || presence.closing || (presence.pid === process.pid && presence.host === this.host)) return;
    this.#twinSeen = true;
    // The peer's host name is read off the wire (any client of the pool may send a presence): its control characters written out, not sent to the terminal that shows the warning.
    process.emitWarning(
      `Another worker of pool "${this.#o.pool}" has this worker's id "${this.id}" (pid ${presence.pid} on ${shownControls(presence.host, '')}): hosts take the two ` +
        'for one (their stats, where they send a running execution\'s messages). Give each worker an id of its own, or leave id unset',
      { code: 'KB_PLUGIN_WORKER_ID_IN_USE' },
    );
  }

  /**
   * Its start failed: nothing it subscribed to answers any more (its own presence query, say, which
   * it would answer by publishing into the connection being closed: nats.js then writes to a
   * socket that has ended, an uncaught exception in the host process).
   */
  abandon(): void {
    this.#abandoned = true;
    clearInterval(this.#presenceTimer);
    this.#services.watch.close();
    for (const sub of this.#subscriptions) sub.unsubscribe();
    void this.#puller.stop().catch(() => undefined);
  }

  #announce(closing = false): void {
    if (this.#abandoned) return;
    const presence: PresenceBody = {
      id: this.id,
      host: this.host,
      pid: process.pid,
      concurrency: this.#o.concurrency,
      running: this.#running,
      heartbeatMs: this.#o.heartbeatMs,
      backend: this.#o.backend.type,
      ...(this.#isolation ? { isolation: this.#isolation } : {}),
      ...(closing ? { closing } : {}),
      ...((this.#draining || this.#closing) && !closing ? { draining: true } : {}),
      plugins: this.#services.unbuilt.builtPlugins(),
    };
    if (!this.#nc.isClosed() && !this.#nc.isDraining()) this.#nc.publish(this.#subjects.presence, encode(presence, 'presence'));
  }

  async #watchStatus(): Promise<void> {
    for await (const status of this.#nc.status()) {
      this.#notices.take(status, this.#closing !== undefined);
      this.#refused ??= refusedByPermissions(status);
      if (status.type === 'disconnect') {
        // What executions send waits for the connection (a result included); a call in flight, or its reply, may be lost: the handler is told.
        this.#linkDown = true;
        for (const call of this.#onLinkDown.splice(0)) call();
        this.#services.courier.hold();
        for (const execution of this.#executions.values()) execution.connectionLost();
      } else if (status.type === 'close') {
        this.#services.courier.resume();
      } else if (status.type === 'reconnect') {
        // Closing: nothing more goes out on a connection being drained (a publish there throws).
        if (this.#closing) continue;
        this.#linkDown = false;
        this.#services.courier.resume();
        // The server may have restarted without its store: make the stream and consumer again.
        this.#pullSubject = undefined;
        this.#puller.renew();
        this.#announce();
      }
    }
  }

  drain(options?: { timeoutMs?: number }): Promise<void> {
    let timeoutMs: number;
    try {
      ({ timeoutMs } = checkDrainOptions(options));
    } catch (error) {
      return Promise.reject(error);
    }
    // Draining already: a shorter timeoutMs stops what runs by then (the first call's still holds).
    if (this.#draining) {
      const stop = setTimeout(() => void this.close(), timeoutMs);
      return this.#draining.finally(() => clearTimeout(stop));
    }
    return (this.#draining = (async () => {
      await this.#puller.stop();
      // Its peers stop handing tasks back for it (PeerPlugins).
      this.#announce();
      // Done, their reports sent; or, with the link down, their handlers over (their reports cannot go: close() bounds that wait).
      const handlersOver = Promise.all([...this.#executions.values()].map((execution) => execution.handlerOver));
      const linkDown = new Promise<void>((resolve) => (this.#linkDown ? resolve() : this.#onLinkDown.push(resolve)));
      const overWithLinkDown = Promise.all([handlersOver, linkDown]).then(() => (this.#linkDown ? undefined : this.#whenIdle()));
      await settlesWithin(Promise.race([this.#whenIdle(), overWithLinkDown]), timeoutMs);
      await this.close();
    })());
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#puller.stop();
      // It takes nothing new: its peers stop handing tasks back for it, hosts count its slots out (as drain() says).
      this.#announce();
      const reason = new ShuttingDownError(`Worker ${this.id} is closing`, { details: { phase: 'running' } });
      for (const execution of this.#executions.values()) execution.orphan(reason);
      const { linkWorks } = await untilStoppedReported(this.#whenIdle(), this.#nc, this.#linkDown);
      clearInterval(this.#presenceTimer);
      this.#services.watch.close();
      await this.#backends.shutdown(2000);
      this.#announce(true);
      for (const sub of this.#subscriptions) sub.unsubscribe();
      // Not with the link down or silent, and bounded: a drain waits for the server, and one that failed
      // leaves the connection draining and reconnecting for ever (closed whatever the drain did).
      if (linkWorks && !this.#linkDown) await settlesWithin(this.#nc.drain().catch(() => undefined), CONNECTION_DRAIN_MS);
      if (!this.#nc.isClosed()) await closeConnection(this.#nc);
      // Reports that waited for a link that is down fail once it is closed: those executions end before close() does (bounded).
      await settlesWithin(this.#whenIdle(), CONNECTION_DRAIN_MS);
      this.#markClosed();
    })();
    return this.#closing;
  }

  #whenIdle(): Promise<void> {
    if (this.#running === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#idle;
      this.#idle = () => {
        previous?.();
        this.#idle = undefined;
        resolve();
      };
    });
  }
}
