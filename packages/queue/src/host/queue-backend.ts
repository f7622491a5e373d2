import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { WorkerCrashedError, isExecutionError, type BackendStats, type IsolationReport, type PluginManifest, type ShuttingDownError } from '@kb-labs/plugin-execution-core';
import { BaseBackend, clearTimeout, monotonicNow, setTimeout, settlesWithin, shownControls, type DispatchControl, type RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';
import { serverProblem } from '../shared/server-problem.js';
import { describeServers } from '../shared/connection.js';
import { PoolStreamError } from '../shared/pool-stream.js';
import { connectionKeyElsewhere } from '../shared/connection-options.js';
import { DEFAULT_SUBJECT_PREFIX, subjectToken } from '../shared/subjects.js';
import { ACK_WAIT_MS } from '../shared/pool-consumer.js';
import { HostLink } from './host-link.js';
import { queueOptionsSchema, resolveQueueOptions, type QueueBackendOptions, type ResolvedQueueOptions } from './options.js';
import { declaredPermissionsKey } from '../shared/declared-permissions.js';
import { pluginVersionKey } from '../runner/peer-plugins.js';
import type { PresenceBody } from '../shared/wire.js';
import { RemoteExecution } from './remote-execution.js';

export type { QueueBackendOptions } from './options.js';

let workspaceRootWarned = false;

/**
 * A workspace root (or manager) given to a host: the same options as a local backend's still work
 * (a host switches to the queue without changing its code), but the root is the worker's, said
 * once per process rather than ignored without a word.
 */
function warnWorkspaceRootUnused(): void {
  if (workspaceRootWarned) return;
  workspaceRootWarned = true;
  process.emitWarning(
    "A queue backend's host does not use its workspace option's root: executions get their workspace on the worker, under the worker's root (startExecutionWorker({ workspace: { root } }), or kb-plugin-exec worker --workspace-root). Said once per process.",
    { code: 'KB_PLUGIN_QUEUE_WORKSPACE_ROOT' },
  );
}

/** A promise and its reject, the reject's first call the one that counts; nobody waiting on it is not an unhandled rejection. */
function rejectable<T>(): { promise: Promise<T>; reject: (reason: unknown) => void } {
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((_, no) => (reject = no));
  promise.catch(() => undefined);
  return { promise, reject };
}

/** In-flight executions from one host, by default (core's admission; the pool's own bound is `queueBound`). */
const DEFAULT_CONCURRENCY = 1000;
/** How long stats() and health() wait for the server before answering with what they know. */
const PROBE_MS = 2000;
/** At shutdown, how long a task in the stream has to be started by a free worker before it is taken back (shutdownBegun). */
const TAKEN_WITHIN_MS = 1000;

/** What `stats().runners` holds on this backend. */
export type QueueRunnerStats = {
  pool: string;
  /** The connection to NATS: `not-connected` until the first use. */
  connection: 'not-connected' | 'connected' | 'reconnecting' | 'closed';
  server?: string;
  /** Tasks waiting in the pool's stream for a worker (all hosts), as last read. */
  queueDepth?: number;
  queueBound: number;
  /** Executions of this host on the pool now: waiting in the stream or running on a worker. */
  inFlight: number;
  /** Of those, started by a worker. */
  started: number;
  /** Workers heard from within `workerLostMs` (none once the backend is shut down: it hears nobody then). */
  workersSeen: number;
  /** Those workers, as each last said: `plugins` the versions it runs (`id@version`), `draining` when it takes nothing new. */
  workers: Array<{ id: string; host: string; pid: number; running: number; concurrency: number; backend: string; plugins: string[]; draining: boolean }>;
};

/**
 * Sends executions to a pool of worker processes through NATS JetStream (`startExecutionWorker`
 * on each worker machine), each running them on its own local backend. The lifecycle is core's,
 * as on every backend: only where the handler runs differs. docs/backends/queue.md has the
 * subjects, the delivery guarantee and the failure table.
 */
export class QueueBackend extends BaseBackend {
  readonly #o: ResolvedQueueOptions;
  readonly #hostId = subjectToken(`${os.hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`);
  #link: Promise<HostLink> | undefined;
  #opened: HostLink | undefined;
  /** Set by shutdown: no connection is opened again (health() after shutdown must not leave one behind). */
  #closed = false;
  /** Set soon after shutdown begins: what no worker has started by then never will (shutdownBegun). */
  #notStarted: ShuttingDownError | undefined;
  /** Rejects when shutdown begins before the first connection is made: what waits for it was never sent. */
  readonly #connectAbandoned = rejectable<never>();
  #refuseTimer: NodeJS.Timeout | undefined;
  /** The last stats() read the stream (its depth is current), rather than timing out. */
  #depthRead = false;

  constructor(options: QueueBackendOptions = {}) {
    // The workspace is the worker's: no lease on the host (the option only says whether there is one).
    super('queue', { ...options, workspace: false }, { concurrency: DEFAULT_CONCURRENCY, optionsSchema: queueOptionsSchema(), optionElsewhere: connectionKeyElsewhere, remoteRunners: true, remoteWorkspaces: options?.workspace !== false });
    try {
      this.#o = resolveQueueOptions(options);
    } catch (error) {
      this.constructionFailed();
      throw error;
    }
    if (options.workspace !== undefined && typeof options.workspace !== 'boolean') warnWorkspaceRootUnused();
  }

  protected async dispatch(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    // One closed without a shutdown is made again by #connect.
    const link = (this.#opened?.state === 'closed' ? undefined : this.#opened) ?? (await this.#connectUnlessStopped(control));
    if (control.stopReason) throw control.stopReason;
    if (this.#notStarted) throw this.#notStarted;
    // As registered at the call: an execution waiting for a slot meanwhile is not sent under a reload's manifest, or none.
    const plugin = { version: control.manifest.version, permissions: declaredPermissionsKey(control.manifest, task.handlerId) };
    const execution = new RemoteExecution(task, control, link, plugin);
    link.executions.set(task.executionId, execution);
    try {
      return await execution.run();
    } catch (error) {
      // A runner on a worker that died (its child, its thread) or a worker lost (telemetry); not a
      // task no worker took (phase 'queued': the stream lost it, the server refused it), where no runner died.
      if (!control.stopReason && isExecutionError(error) && error.code === 'WORKER_CRASHED' && error.details.phase !== 'queued') link.workers.crashed(execution.worker, error.details.reason);
      throw error;
    } finally {
      link.executions.delete(task.executionId);
    }
  }

  /** The first connection, still being made (up to its 5 s timeout), or the execution's stop (its timeout, an abort), whichever comes first. */
  #connectUnlessStopped(control: DispatchControl): Promise<HostLink> {
    let unsubscribe: (() => void) | undefined;
    const stopped = new Promise<never>((_, reject) => (unsubscribe = control.onStop(reject)));
    return Promise.race([this.#connect(), stopped, this.#connectAbandoned.promise]).finally(() => unsubscribe?.());
  }

  #connect(): Promise<HostLink> {
    if (this.#closed) return Promise.reject(new WorkerCrashedError('The queue backend is shut down: its connection is closed', { details: { reason: 'runner-lost', phase: 'queued' } }));
    // Closed without a shutdown (nats.js gave up on it): made again, as at the first use.
    if (this.#opened?.state === 'closed') {
      void this.#opened.close().catch(() => undefined);
      this.#opened = this.#link = undefined;
    }
    this.#link ??= HostLink.open(this.#o, this.#hostId, () => !this.#closed).then(
      (link) => (this.#opened = link),
      (error: unknown) => {
        this.#link = undefined;
        const message = String((error as Error)?.message ?? error);
        const why = error instanceof PoolStreamError ? `The queue backend cannot use pool "${this.#o.pool}": ${message}` : serverProblem('The queue backend', this.#o.connection, error).message;
        throw new WorkerCrashedError(why, { details: { reason: 'runner-lost', phase: 'queued', message }, cause: error });
      },
    );
    return this.#link;
  }

  /**
   * A task a free worker takes at once (called just before shutdown) runs to its end, as on every
   * backend; what is still in the stream a moment later waits for a busy worker, as executions
   * elsewhere wait for a slot: it never starts, and fails now rather than at the deadline. So
   * does one still waiting then for the first connection (never sent), not when the connection
   * is given up on (its 5 s timeout, against a server that does not answer).
   */
  protected override shutdownBegun(notStarted: ShuttingDownError): void {
    this.#refuseTimer = setTimeout(() => {
      if (!this.#opened) this.#connectAbandoned.reject(notStarted);
      this.#notStarted = notStarted;
      for (const execution of this.#opened?.executions.values() ?? []) execution.refuseStart(notStarted);
    }, TAKEN_WITHIN_MS).unref();
  }

  /**
   * A first connection still being made is not waited for: shutdown ends now, and that connection
   * is closed as soon as it opens (its attempt ends within its 5 s timeout whatever happens).
   */
  protected async closeRunners(): Promise<void> {
    clearTimeout(this.#refuseTimer);
    this.#closed = true;
    if (!this.#opened && this.#link) {
      void this.#link.then((link) => link.close(), () => undefined);
      return;
    }
    const link = await this.#link?.catch(() => undefined);
    await link?.close();
  }

  /** Reads the pool's queue depth from the server (bounded) before the figures. */
  override async stats(): Promise<BackendStats> {
    const link = this.#opened;
    const readBefore = link?.streamReadAt;
    if (link) await settlesWithin(link.checkStream(), PROBE_MS);
    // A read that did not come back (a cut link) leaves an old figure: not given as the depth now.
    this.#depthRead = link !== undefined && link.streamReadAt !== readBefore;
    return super.stats();
  }

  protected override runnerStats(): QueueRunnerStats {
    const link = this.#opened;
    const executions = link ? [...link.executions.values()] : [];
    const workers = link && link.state !== 'closed' ? link.workers.alive() : [];
    return {
      pool: this.#o.pool,
      // Shut down: closed, whether or not it had connected (its connection would not be made now).
      connection: this.#closed ? 'closed' : (link?.state ?? 'not-connected'),
      // Only while connected: during an outage the last figures may no longer be true.
      ...(link?.state === 'connected' ? { server: link.server } : {}),
      ...(link?.state === 'connected' && this.#depthRead && link.queueDepth !== undefined ? { queueDepth: link.queueDepth } : {}),
      queueBound: link?.queueBound ?? this.#o.queueBound,
      inFlight: executions.length,
      started: executions.filter((e) => e.worker).length,
      workersSeen: workers.length,
      workers: workers.map(({ id, host, pid, running, concurrency, backend, plugins, draining }) => ({ id, host, pid, running, concurrency, backend, plugins: plugins ?? [], draining: draining === true })),
    };
  }

  /** The plugins' code is on the workers; this host knows their manifests only. */
  protected override get runsPluginFilesHere(): boolean {
    return false;
  }

  /**
   * The connection, for health(): one still being made after PROBE_MS is said so (its attempt
   * goes on, up to the connect timeout), not waited for: health() answers within its bound.
   */
  async #connectForProbe(): Promise<HostLink | string> {
    const connecting = this.#connect();
    if (!(await settlesWithin(connecting, PROBE_MS))) {
      return `the connection to the NATS server (${describeServers(this.#o.connection)}) is still being made, or the pool's stream read after it: no answer within ${PROBE_MS} ms (it is given up after 5 s)`;
    }
    return connecting.catch((error: unknown) => (error as Error).message);
  }

  protected override async runnerProblems(): Promise<string[]> {
    const link = await this.#connectForProbe();
    if (typeof link === 'string') return [link];
    if (link.state === 'reconnecting') return [link.connectionProblem];
    if (link.state === 'closed') return [];
    // Workers are heard through the server: a server that does not answer says nothing of them.
    const silence = await link.serverSilence(PROBE_MS);
    if (silence) return [silence];
    await settlesWithin(link.checkStream(), PROBE_MS);
    const problems = [link.streamProblem, link.streamSilence, link.storageProblem, link.permissionProblem].filter((p): p is string => p !== undefined);
    await link.workers.heardWithin(PROBE_MS);
    const alive = link.workers.alive();
    if (alive.length > 0 && alive.every((worker) => worker.draining === true)) {
      problems.push(`every connected worker of pool "${this.#o.pool}" (${alive.length}) is draining, taking nothing new: executions wait in the stream until another connects, or fail with TIMEOUT`);
    }
    if (alive.length > 0) return [...problems, ...this.#versionsNoWorkerHas(alive)];
    return [...problems, `no worker of pool "${this.#o.pool}"${this.#prefixNamed()} is connected: executions wait in the stream until one takes them, or fail with TIMEOUT`];
  }

  /** Plugins registered here whose version no live worker has: each of their executions would fail (a deploy half done). */
  #versionsNoWorkerHas(alive: readonly PresenceBody[]): string[] {
    // One set of what the workers have: a search of each worker's list per plugin held a host with 5,000 plugins ~360 ms a call.
    const had = new Set(alive.flatMap((worker) => worker.plugins ?? []));
    const missing = this.registry.list().filter((plugin) => !had.has(pluginVersionKey(plugin.id, plugin.manifest.version)));
    if (missing.length === 0) return [];
    const which = missing.map((plugin) => `${plugin.id} ${plugin.manifest.version}`).join(', ');
    return [`no connected worker of pool "${this.#o.pool}" has ${which}, the host's version: its executions fail (plugin-version-mismatch, or HANDLER_NOT_FOUND where the workers lack the plugin or its handlers' files: not built there); deploy the same version, built, to both`];
  }

  /** For the TIMEOUT of an execution no worker started: what the host knew of the pool then. */
  protected override unstartedReason(task: RunnerTask, manifest: PluginManifest): string {
    const link = this.#opened;
    if (!link) return 'the connection to the NATS server was not open yet';
    if (link.state !== 'connected') return link.connectionProblem;
    // Its link cut without a reset: the connection looks open until nats.js gives up on it.
    const silentMs = Math.round(link.serverSilentMs(monotonicNow()));
    // A ping unanswered for half a watch tick is already more than a server takes; not only past workerLostMs (a time limit may be shorter).
    if (silentMs > Math.min(link.workerLostMs, link.watchEveryMs / 2)) return `the NATS server has not answered this host for ${silentMs} ms: the host's own link to it may be cut`;
    if (link.streamSilence) return link.streamSilence;
    const alive = link.workers.alive();
    if (alive.length === 0) return `no worker of pool "${this.#o.pool}"${this.#prefixNamed()} is connected`;
    const workers = alive.filter((worker) => worker.draining !== true);
    if (workers.length === 0) return `no worker of pool "${this.#o.pool}" took it: the ${alive.length} connected ${alive.length === 1 ? 'was' : 'were'} draining (taking nothing new)`;
    const versionless = this.#versionNoneHas(workers, task.pluginId, manifest.version);
    if (versionless) return versionless;
    const slots = workers.reduce((n, w) => n + w.concurrency, 0);
    const busy = workers.reduce((n, w) => n + w.running, 0);
    // Slots free: a worker that took it and went silent (stopped, its link cut) holds it until the consumer's ack wait is over.
    const held = busy < slots ? `; a worker that fetched it and then went silent (stopped, or its link cut) holds it for up to ${ACK_WAIT_MS / 1000} s before another may take it` : '';
    const draining = alive.length - workers.length;
    return `no worker of pool "${this.#o.pool}" took it: ${alive.length} connected${draining ? ` (${draining} draining, their slots not counted)` : ''}, ${busy} of their ${slots} slots busy when last heard${held}`;
  }

  /**
   * The workers hand a task back unclaimed while a live one says it has the task's plugin version,
   * and fail it after a few hand-backs (~1 s) when none does: a shorter time limit (a reload on the
   * host not deployed to the workers yet) ends it first, and then this is why.
   */
  #versionNoneHas(workers: readonly PresenceBody[], pluginId: string, version: string): string | undefined {
    if (workers.some((worker) => worker.plugins?.includes(pluginVersionKey(pluginId, version)))) return undefined;
    const prefix = pluginVersionKey(pluginId, '');
    // What the workers say they have (their presences), quoted as a version in a message is.
    const theirs = [...new Set(workers.flatMap((worker) => worker.plugins?.filter((p) => typeof p === 'string' && p.startsWith(prefix)) ?? []))];
    const shown = theirs.slice(0, 5).map((p) => shownControls(JSON.stringify(p.slice(prefix.length)), ''));
    const have = shown.length ? `they have version ${shown.join(', ')}${theirs.length > 5 ? ', …' : ''}` : "none has the plugin, or its handlers' files (not built there)";
    return `no connected worker of pool "${this.#o.pool}" has plugin "${pluginId}" version ${JSON.stringify(version)}, the host's: ${have}; deploy the same version, built, to both`;
  }

  /** The subject prefix, when not the default: workers started with another one serve another pool of the same name. */
  #prefixNamed(): string {
    return this.#o.subjectPrefix === DEFAULT_SUBJECT_PREFIX ? '' : ` under subject prefix "${this.#o.subjectPrefix}"`;
  }

  protected async isolation(): Promise<IsolationReport> {
    const link = await this.#connectForProbe();
    if (typeof link === 'string') return { requested: 'remote workers', active: 'unknown', layers: [], reason: 'not connected to the NATS server' };
    await link.workers.heardWithin(PROBE_MS);
    return link.workers.isolation(this.#o.pool);
  }
}
