import os from 'node:os';
import type { ResourceLimits } from 'node:worker_threads';
import { Piscina } from 'piscina';
import {
  HostSession,
  QueueFullError,
  ShuttingDownError,
  ValidationError,
  WorkerCrashedError,
  serializeError,
  unserializableError,
  unwrapRunnerResult,
  type DispatchControl,
  type ExecutionError,
  type RunnerResult,
  type RunnerTask,
} from '@kb-labs/plugin-execution-core';
import { crashError, startFailureError } from './crash.js';
import { PoolThread, type ThreadEnd } from './pool-thread.js';
import { DOORBELL, STAGE_DEPTH, isThreadHello, type RetireReason, type ThreadAck, type ThreadConfig, type ThreadResult, type ThreadTask, type ThreadToHost } from './thread-protocol.js';

type PiscinaOptions = NonNullable<ConstructorParameters<typeof Piscina>[0]>;
type Balancer = NonNullable<PiscinaOptions['loadBalancer']>;

/** How often an execution whose thread died before starting it is handed to another thread. */
const MAX_REDISPATCH = 2;
/** How often one waiting behind another execution may lose its thread (to that one's crash, timeout …) and be placed again. */
const MAX_REPLACE = 8;
/**
 * How long the execution ahead of a waiting one must have run before the waiting one is moved
 * to a thread that fell idle. Moving costs a round trip on both threads; under a steady load
 * an idle thread gets new work within microseconds, so moving at once would mostly churn.
 */
const MOVE_AFTER_MS = 2;
/** How long a dying thread gets to deliver its exit event before the execution is reported anyway. */
const EXIT_WAIT_MS = 2000;
/** How long shutdown waits for terminated threads to be gone. */
const CLOSE_WAIT_MS = 5000;

const QUEUE_OPTIONS = Piscina.queueOptionsSymbol;

export interface LaneSettings {
  /** `file:` URL of the worker entry. */
  entry: string;
  minThreads: number;
  maxThreads: number;
  idleTimeoutMs: number;
  resourceLimits: ResourceLimits | undefined;
  env: Record<string, string>;
  execArgv: string[] | undefined;
  maxExecutionsPerThread: number;
  abortGraceMs: number;
  maxOutputPerStream: number;
  maxLogLineLength: number;
  spinWaitUs: number;
}

/** Counters shared by every lane of a backend (for `stats().runners`). */
export class PoolCounters {
  started = 0;
  failedToStart = 0;
  /** Thread starts that failed since the last one that succeeded. */
  startFailureStreak = 0;
  lastStartError: string | undefined;
  crashed = 0;
  terminated = 0;
  stopped = 0;
  retired: Record<RetireReason, number> = { 'globals-tampered': 0, 'handles-left': 0, recycled: 0 };
  redispatched = 0;
}

/**
 * The cap on running executions, shared by a backend's lanes (BaseBackend admits more than that:
 * up to STAGE_DEPTH waiting behind each running one, see thread-protocol.ts), and the lanes to
 * wake when an execution stops running.
 */
export class RunGate {
  readonly cap: number;
  readonly lanes: PoolLane[] = [];
  /** Shared with the threads (see ThreadConfig.load): [0] mirrors `running`. */
  readonly load = new Int32Array(new SharedArrayBuffer(8));
  #running = 0;

  constructor(cap: number) {
    this.cap = cap;
  }

  /** Executions on a thread or on their way to one; not those waiting behind another. */
  get running(): number {
    return this.#running;
  }

  set running(value: number) {
    this.#running = value;
    Atomics.store(this.load, 0, value);
  }

  get full(): boolean {
    return this.#running >= this.cap;
  }

  freed(): void {
    for (const lane of this.lanes) lane.pump();
  }
}

/** One execution on its way through the lane. */
interface Flight {
  readonly k: number;
  readonly task: RunnerTask;
  readonly control: DispatchControl;
  /** Made when the thread first says something besides the result (most executions never do). */
  session: HostSession | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  /**
   * Only for an execution that has to wait in piscina's queue (no idle thread when it was
   * dispatched): piscina's abort takes it out of the queue. A running execution is stopped by
   * terminating its thread, which needs no signal (an AbortSignal costs ~5 µs to create on
   * Node 20, as much as the rest of the dispatch).
   */
  abort: AbortController | undefined;
  /** The thread it runs on, or waits on behind the running one. */
  thread: PoolThread | undefined;
  /** The host knows it has begun (the time limit runs), and since when (performance.now()). */
  started: boolean;
  startedAt: number;
  /** Counted in the gate's `running`. */
  holdsRun: boolean;
  /** Its current dispatch: a session reply or rejection for an earlier one is not about it. */
  d: number;
  /** Its claim cell on its thread, until the thread has answered for it (-1: none). */
  cell: number;
  replaced: number;
  /** The thread sent something for it (a log, an event, a platform call): it began there. */
  heard: boolean;
  result: RunnerResult | undefined;
  stop: ExecutionError | undefined;
  graceTimer: NodeJS.Timeout | undefined;
  redispatches: number;
  settled: boolean;
  onStop: (reason: ExecutionError) => void;
}

/**
 * One piscina pool and the threads in it. A backend has a default lane, plus one per distinct
 * handler `memoryMb` (a thread's heap cap is fixed when it starts).
 *
 * Admission (who waits, QUEUE_FULL) is BaseBackend's; it hands over up to STAGE_DEPTH + 1 times
 * as many executions as may run. The lane places each one:
 * - the gate has room: on an idle thread, in a new session (a piscina task: it starts now), or,
 *   none being ready, in piscina's queue until a thread has finished starting;
 * - else over the channel of a thread in session, behind its running execution, where fewest
 *   wait (see thread-protocol.ts), or, when every such place is taken, held here until something
 *   stops running.
 * When a thread falls idle while an execution still waits behind another one elsewhere, that one
 * is taken back and placed again, so that nothing waits behind a slow handler while a thread idles.
 * When a thread dies, the lane settles or places again every execution on it, from the thread's
 * exit (piscina's rejection only tells it which session that was).
 */
export class PoolLane {
  readonly label: string;
  readonly heapLimitMb: number | undefined;
  readonly #settings: LaneSettings;
  readonly #counters: PoolCounters;
  readonly #pool: Piscina<ThreadTask, ThreadAck>;
  readonly #threads = new Map<number, PoolThread>();
  readonly #flights = new Map<number, Flight>();
  readonly #gate: RunGate;
  /** Admitted, waiting for the gate (FIFO). */
  readonly #held: Flight[] = [];
  /** Set while a later look at moving waiting executions is due (see MOVE_AFTER_MS). */
  #moveTimer: NodeJS.Timeout | undefined;
  #nextKey = 1;
  #nextDispatch = 1;
  #closing = false;
  /**
   * Set while a thread's exit is being dealt with: piscina learns of the exit from its own
   * listener, after ours, and would still count the dead thread — nothing is placed until then.
   */
  #inExit = false;

  constructor(label: string, settings: LaneSettings, counters: PoolCounters, gate: RunGate) {
    this.label = label;
    this.#gate = gate;
    gate.lanes.push(this);
    this.heapLimitMb = settings.resourceLimits?.maxOldGenerationSizeMb;
    this.#settings = settings;
    this.#counters = counters;
    const workerData: ThreadConfig = {
      maxExecutions: settings.maxExecutionsPerThread,
      maxOutputPerStream: settings.maxOutputPerStream,
      maxLogLineLength: settings.maxLogLineLength,
      spinWaitUs: settings.spinWaitUs,
      cores: Math.max(1, os.availableParallelism()),
      load: gate.load.buffer as SharedArrayBuffer,
    };
    this.#pool = createPool({
      filename: settings.entry,
      minThreads: settings.minThreads,
      maxThreads: settings.maxThreads,
      idleTimeout: settings.idleTimeoutMs,
      // Never reached: only executions the gate lets run wait here, for a thread to finish
      // starting. A bound still beats Infinity if that breaks.
      maxQueue: settings.maxThreads * 2,
      // One session per thread; what waits behind its running execution goes over the channel.
      concurrentTasksPerWorker: 1,
      // 'sync' parks an idle thread in Atomics.wait inside a microtask, which freezes whatever a
      // handler left behind (a rejected promise nobody handled, a timer) until the *next*
      // execution runs there, and blames it. With the event loop turning between executions,
      // stray work surfaces on the thread that caused it. Measured no slower than 'sync'
      // for raw piscina round trips on our machines.
      atomics: 'disabled',
      env: settings.env,
      workerData,
      ...(settings.resourceLimits ? { resourceLimits: settings.resourceLimits } : {}),
      ...(settings.execArgv ? { execArgv: settings.execArgv } : {}),
      // BaseBackend keeps wait/run percentiles; piscina's histograms would be a second copy.
      recordTiming: false,
      loadBalancer: this.#balance,
    });
    this.#adopt();
    this.#pool.on('workerCreate', (worker: { id: number }) => {
      const thread = this.#track(worker.id);
      if (thread) thread.ready = true;
      // An idle thread now: what waits behind another may move here.
      queueMicrotask(() => this.pump());
    });
    this.#pool.on('workerDestroy', (worker: { id: number }) => {
      // piscina destroys a thread it stops (idle, close) and one that already failed: only the
      // first kind is a normal end.
      const thread = this.#threads.get(worker.id);
      if (thread?.alive && thread.error === undefined) thread.stoppedByPool = true;
    });
    this.#pool.on('message', (message: unknown) => {
      if (!isThreadHello(message)) return;
      const thread = this.#track(message.threadId);
      if (thread?.alive && !thread.port) {
        thread.connect(message.port, message.claims);
        this.#counters.startFailureStreak = 0;
      } else {
        message.port.close();
      }
    });
    // A thread that dies with no execution on it makes piscina emit 'error'; without a listener
    // that would throw in the host. The thread's own exit handler already counted it.
    this.#pool.on('error', () => {});
  }

  /** Run one execution; resolves with the handler's data or rejects with an ExecutionError. */
  run(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const k = this.#nextKey++;
      const flight: Flight = {
        k,
        task,
        control,
        session: undefined,
        resolve,
        reject,
        abort: undefined,
        thread: undefined,
        started: false,
        startedAt: 0,
        holdsRun: false,
        d: 0,
        cell: -1,
        replaced: 0,
        heard: false,
        result: undefined,
        stop: undefined,
        graceTimer: undefined,
        redispatches: 0,
        settled: false,
        onStop: (reason) => this.#onStop(flight, reason),
      };
      this.#flights.set(k, flight);
      // A callback, not a listener on control.signal: reading the signal would create it.
      control.onStop(flight.onStop);
      this.#place(flight);
    });
  }

  /** Place an execution that is on no thread (new, taken back, or its thread died before it began). */
  #place(flight: Flight): void {
    if (!this.#tryPlace(flight, this.#held.length === 0)) this.#held.push(flight);
  }

  #tryPlace(flight: Flight, first: boolean): boolean {
    flight.thread = undefined;
    flight.started = false;
    flight.heard = false;
    if (!this.#gate.full) {
      this.#gate.running++;
      flight.holdsRun = true;
      const lingering = this.#lingeringThread();
      if (!lingering || !this.#stage(flight, lingering)) this.#startSession(flight, this.#hasIdleThread() ? undefined : new AbortController());
      return true;
    }
    // Behind a running execution; not past executions held here, nor past piscina's queue.
    if (!first || this.#pool.queueSize > 0) return false;
    const thread = this.#stagingThread();
    return thread !== undefined && this.#stage(flight, thread);
  }

  /** A thread in session with nothing to run: what is handed to it begins at once. */
  #lingeringThread(): PoolThread | undefined {
    for (const thread of this.#threads.values()) {
      if (thread.session && thread.running === undefined && thread.staged.length === 0 && thread.claims && thread.port && thread.alive && !thread.endedBy) return thread;
    }
    return undefined;
  }

  /** The thread in session with the fewest executions waiting behind its running one, and room for one more. */
  #stagingThread(): PoolThread | undefined {
    let best: PoolThread | undefined;
    for (const thread of this.#threads.values()) {
      if (!thread.session || thread.running === undefined || thread.staged.length >= STAGE_DEPTH) continue;
      if (!thread.claims || !thread.port || !thread.alive || thread.endedBy) continue;
      if (best && best.staged.length <= thread.staged.length) continue;
      const running = this.#flights.get(thread.running);
      // One being stopped ends its thread, most likely.
      if (!running || running.stop || running.settled) continue;
      best = thread;
    }
    return best;
  }

  /** Place held executions while the gate allows; then move executions waiting behind others to idle threads. */
  pump(): void {
    if (this.#closing || this.#inExit) return;
    while (this.#held.length > 0 && this.#tryPlace(this.#held[0]!, true)) this.#held.shift();
    while (this.#held.length === 0 && !this.#gate.full && (this.#hasIdleThread() || this.#lingeringThread())) {
      let moved = false;
      let soonest = Number.POSITIVE_INFINITY;
      const now = performance.now();
      for (const thread of this.#threads.values()) {
        const flight = thread.staged.length === 0 ? undefined : this.#flights.get(thread.staged[0]!);
        if (!flight) continue;
        const ahead = thread.running === undefined ? undefined : this.#flights.get(thread.running);
        const due = ahead?.started ? ahead.startedAt + MOVE_AFTER_MS : now;
        if (due > now) {
          soonest = Math.min(soonest, due);
        } else if (this.#takeBack(flight)) {
          this.#place(flight);
          moved = true;
          break;
        }
      }
      if (!moved) {
        if (soonest !== Number.POSITIVE_INFINITY && !this.#moveTimer) {
          this.#moveTimer = setTimeout(() => {
            this.#moveTimer = undefined;
            this.pump();
          }, Math.ceil(soonest - now));
          this.#moveTimer.unref();
        }
        return;
      }
    }
  }

  /** Place what can be placed now: every lane when the gate has room (this one among them), else this one. */
  #wake(): void {
    if (this.#gate.full) this.pump();
    else this.#gate.freed();
  }

  #nextD(): number {
    const d = this.#nextDispatch++;
    if (this.#nextDispatch > 0x7fffffff) this.#nextDispatch = 1;
    return d;
  }

  /** Open a session for it: on an idle thread, or (`abort` set) in piscina's queue until a thread is ready. */
  #startSession(flight: Flight, abort: AbortController | undefined): void {
    flight.abort = abort;
    flight.cell = -1;
    const d = (flight.d = this.#nextD());
    const payload: ThreadTask & { [QUEUE_OPTIONS]: Flight } = { k: flight.k, task: flight.task, [QUEUE_OPTIONS]: flight };
    let reply: Promise<ThreadAck>;
    try {
      reply = this.#pool.run(payload, abort ? { signal: abort.signal } : undefined);
    } catch (error) {
      // piscina starts a thread inside run() when it needs one, and Worker's constructor throws
      // synchronously (ERR_WORKER_INVALID_EXEC_ARGV, out of resources …).
      reply = Promise.reject(error);
    }
    reply.then(
      () => {
        if (flight.d === d && flight.thread) this.#onSessionEnd(flight.thread);
      },
      (error: unknown) => {
        if (flight.d === d) void this.#onRejected(flight, error);
      },
    );
    // It waits for a thread: piscina may have started one just now.
    if (!flight.thread) this.#adopt();
  }

  /**
   * Hand it over the channel to a thread in session, to run after what runs there — or at once,
   * when nothing does (the thread lingers). False if that cannot be done (no free cell, no channel).
   */
  #stage(flight: Flight, thread: PoolThread): boolean {
    const cell = thread.cellOwner.indexOf(0);
    if (cell < 0) return false;
    const d = this.#nextD();
    const claims = thread.claims!;
    Atomics.store(claims, cell, d);
    try {
      thread.send({ k: flight.k, task: flight.task, d, c: cell });
    } catch (error) {
      Atomics.store(claims, cell, 0);
      if ((error as Error)?.name !== 'DataCloneError') return false;
      // The input holds something structured clone refuses; the thread never saw it.
      this.#settle(flight, unserializableError('The input', error));
      return true;
    }
    flight.abort = undefined;
    flight.d = d;
    flight.cell = cell;
    flight.thread = thread;
    thread.cellOwner[cell] = flight.k;
    thread.staged.push(flight.k);
    flight.control.setRunner({ workerId: thread.id });
    if (thread.running === undefined) {
      // It lingers: the doorbell wakes it if it busy-waits.
      Atomics.add(claims, DOORBELL, 1);
      this.#promote(thread);
    }
    return true;
  }

  /**
   * Take an execution back from the thread it waits on, if that thread has not begun it: it then
   * never runs there (see the claim cell in thread-protocol.ts).
   */
  #takeBack(flight: Flight): boolean {
    const thread = flight.thread;
    if (!thread?.claims || flight.started || flight.cell < 0) return false;
    const i = thread.staged.indexOf(flight.k);
    if (i < 0 || Atomics.compareExchange(thread.claims, flight.cell, flight.d, 0) !== flight.d) return false;
    thread.staged.splice(i, 1);
    thread.cellOwner[flight.cell] = 0;
    flight.cell = -1;
    flight.thread = undefined;
    flight.d = 0;
    return true;
  }

  /** It no longer runs (or never will): give its place in the gate back. */
  #releaseRun(flight: Flight): void {
    if (!flight.holdsRun) return;
    flight.holdsRun = false;
    this.#gate.running--;
  }

  /**
   * The first execution waiting on the thread begins (the thread answered for the one before, or
   * was lingering): the thread claims it as soon as it sees it, if it has not already. It keeps
   * its cell until the thread has answered for it (see #onSessionEnd).
   */
  #promote(thread: PoolThread): void {
    const k = thread.staged.shift();
    const flight = k === undefined ? undefined : this.#flights.get(k);
    if (!flight || flight.settled) return;
    thread.running = flight.k;
    if (!flight.holdsRun) {
      flight.holdsRun = true;
      this.#gate.running++;
    }
    if (!flight.started) {
      flight.started = true;
      flight.startedAt = performance.now();
      flight.control.started();
    }
    // Stopped while it waited, too late to take it back: it is running now.
    if (flight.stop) this.#stopRunning(flight, flight.stop);
  }

  /** Track threads piscina started that we have not seen yet (so a start-up failure is noticed). */
  #adopt(): void {
    for (const worker of this.#pool.threads) if (!this.#threads.has(worker.threadId)) this.#track(worker.threadId);
  }

  /** Whether piscina will hand the next task to a thread at once (so it needs no abort signal). */
  #hasIdleThread(): boolean {
    for (const thread of this.#threads.values()) {
      if (thread.ready && thread.alive && !thread.session && thread.endedBy === undefined) return true;
    }
    return false;
  }

  /**
   * piscina's load balancer, used to learn which thread each session goes to (the flight rides
   * along under piscina's queueOptionsSymbol, which is never sent to the thread).
   */
  readonly #balance: Balancer = (task, workers) => {
    const flight = (task as unknown as Record<symbol, Flight | null>)[QUEUE_OPTIONS];
    for (const worker of workers) {
      if (worker.terminating || worker.destroyed || worker.currentUsage !== 0) continue;
      const thread = this.#track(worker.id);
      if (!thread?.alive || thread.endedBy || thread.session) continue;
      if (flight) {
        thread.session = true;
        thread.running = flight.k;
        flight.thread = thread;
        flight.control.setRunner({ workerId: thread.id });
        if (!flight.started) {
          flight.started = true;
          flight.startedAt = performance.now();
          flight.control.started();
        }
        // Stopped while it waited in piscina's queue without a signal: piscina posts it right
        // after this returns; end the thread before it gets far.
        if (flight.stop || flight.settled) queueMicrotask(() => endThread(thread, { kind: 'terminated' }));
      }
      return worker;
    }
    return null;
  };

  #track(threadId: number): PoolThread | undefined {
    let thread = this.#threads.get(threadId);
    if (thread) return thread;
    const worker = this.#pool.threads.find((w) => w.threadId === threadId);
    if (!worker) return undefined;
    thread = new PoolThread(threadId, worker, this.#route, this.#onThreadExit);
    this.#threads.set(threadId, thread);
    this.#counters.started++;
    return thread;
  }

  readonly #route = (thread: PoolThread, message: ThreadToHost): void => {
    if ('crash' in message) {
      thread.record(message.crash);
      return;
    }
    if ('m' in message && message.m.type === 'result') {
      this.#onAnswer(thread, message.k, message.m, (message as ThreadResult).retire);
      return;
    }
    const flight = this.#flights.get(message.k);
    if (!flight || flight.settled) return;
    flight.heard = true;
    if ('out' in message) {
      const level = message.out === 'stdout' ? 'info' : 'error';
      for (const line of message.lines) flight.control.log(level, String(line), undefined, message.out);
      return;
    }
    flight.session ??= new HostSession(flight.control, (m) => flight.thread?.send({ k: flight.k, m }));
    flight.session.handle(message.m);
  };

  /**
   * The thread answered for execution `k`: it stands, and the next one waiting there begins. All
   * the execution sent came before its answer on the same channel.
   */
  #onAnswer(thread: PoolThread, k: number, result: RunnerResult, retire: RetireReason | undefined): void {
    if (thread.running === k) thread.running = undefined;
    const cell = thread.cellOwner.indexOf(k);
    if (cell >= 0) thread.cellOwner[cell] = 0;
    // Before the answer is settled, which frees its place in the gate: the thread's next comes
    // first, and a retiring thread must not be handed anything more.
    if (retire) {
      // The thread asked not to be reused and begins nothing more: end it (piscina replaces it;
      // what waited there goes elsewhere).
      endThread(thread, { kind: 'retired', reason: retire });
    } else if (thread.running === undefined && thread.staged.length > 0) {
      this.#promote(thread);
    }
    const flight = this.#flights.get(k);
    if (flight && !flight.settled) {
      flight.cell = -1;
      flight.result = result;
      this.#settle(flight);
    }
  }

  readonly #onThreadExit = (thread: PoolThread): void => {
    this.#inExit = true;
    try {
      this.#onExit(thread);
    } finally {
      this.#inExit = false;
    }
    // piscina starts a replacement from its own exit handler, which runs right after this one.
    queueMicrotask(() => {
      this.#adopt();
      this.#wake();
    });
  };

  #onExit(thread: PoolThread): void {
    this.#threads.delete(thread.id);
    const counters = this.#counters;
    if (!thread.connected && thread.endedBy === undefined && !thread.stoppedByPool) {
      // Died before it ever said hello: the entry itself fails to load (bad execArgv, heap too
      // small …). piscina stops starting threads after that, so whoever waits for one would
      // wait until their time limit: fail them now.
      counters.failedToStart++;
      counters.startFailureStreak++;
      const error = thread.error as Error | undefined;
      counters.lastStartError = error?.message ?? `exited with code ${thread.exitCode}`;
      for (const flight of this.#flights.values()) {
        if (flight.thread || flight.settled) continue;
        flight.stop ??= startFailureError(thread, flight.task);
        flight.abort?.abort(flight.stop);
        this.#settle(flight, flight.stop);
      }
    } else {
      const end: ThreadEnd = thread.end;
      if (end === 'retired' && thread.endedBy?.kind === 'retired') counters.retired[thread.endedBy.reason]++;
      else if (end === 'crashed') counters.crashed++;
      else if (end === 'terminated') counters.terminated++;
      else counters.stopped++;
    }
    this.#onThreadGone(thread);
  }

  /**
   * Deal with every execution on a thread that is gone (its channel read to the end): those that
   * waited behind the running one never began and are placed again; the running one gets its
   * answer if it gave one, else the reason it did not.
   */
  #onThreadGone(thread: PoolThread): void {
    if (thread.gone) return;
    thread.gone = true;
    thread.session = false;
    const again: Flight[] = [];
    for (const k of thread.staged.splice(0)) {
      const flight = this.#flights.get(k);
      if (!flight || flight.settled) continue;
      flight.thread = undefined;
      flight.cell = -1;
      flight.d = 0;
      if (flight.stop) {
        this.#settle(flight, flight.stop);
      } else if (flight.replaced < MAX_REPLACE && !this.#closing) {
        // It waited behind the execution that ended the thread (a crash, a timeout, a retirement).
        flight.replaced++;
        this.#counters.redispatched++;
        again.push(flight);
      } else {
        this.#settle(flight, crashError(thread, flight.k, flight.task, this.heapLimitMb));
      }
    }
    thread.cellOwner.fill(0);
    const k = thread.running;
    thread.running = undefined;
    const running = k === undefined ? undefined : this.#flights.get(k);
    if (running && !running.settled) this.#onRunnerGone(thread, running, again);
    if (again.length > 0) this.#held.unshift(...again);
    this.#wake();
  }

  /** The thread running `flight` is gone: the answer it gave stands; else the stop, a crash, or (it never began) another thread. */
  #onRunnerGone(thread: PoolThread, flight: Flight, again: Flight[]): void {
    // (Had it answered, the answer, read from the channel before this, would have settled it.)
    if (flight.stop) {
      this.#settle(flight, flight.stop);
      return;
    }
    const startedHere = flight.heard || thread.reports.some((r) => r.k === flight.k);
    if (!startedHere && thread.reports.length > 0 && flight.redispatches < MAX_REDISPATCH && !this.#closing) {
      // The thread died of something left over from an earlier execution before it began this
      // one (its report names another execution or none): this one never ran, so it can go to
      // another thread instead of failing for someone else's crash.
      flight.redispatches++;
      this.#counters.redispatched++;
      this.#releaseRun(flight);
      flight.thread = undefined;
      flight.cell = -1;
      again.push(flight);
      return;
    }
    this.#settle(flight, crashError(thread, flight.k, flight.task, this.heapLimitMb));
  }

  /**
   * The thread ended its session (nothing came while it lingered): piscina counts it idle. What
   * was handed to it meanwhile never began there: it is taken back and placed again, first.
   */
  #onSessionEnd(thread: PoolThread): void {
    // Its answers on the channel, sent before this reply, come first.
    thread.drain();
    if (!thread.session) return;
    thread.session = false;
    const again: Flight[] = [];
    const running = thread.running === undefined ? undefined : this.#flights.get(thread.running);
    if (running && !running.settled) {
      // Handed to it as it lingered, and not seen before it gave up: it has not begun.
      if (this.#reclaim(thread, running)) {
        thread.running = undefined;
        again.push(running);
      }
    } else {
      thread.running = undefined;
    }
    again.push(...this.#reclaimStaged(thread));
    if (thread.running !== undefined || thread.staged.length > 0) {
      // The thread claimed one outside its session: not the protocol. End it; its exit deals with them.
      endThread(thread, { kind: 'terminated' });
    }
    this.#placeAgain(again);
  }

  /** Take back every execution waiting on the thread that it has not claimed, in order. */
  #reclaimStaged(thread: PoolThread): Flight[] {
    const back: Flight[] = [];
    for (const k of [...thread.staged]) {
      const waiting = this.#flights.get(k);
      if (waiting && this.#reclaim(thread, waiting)) back.push(waiting);
    }
    return back;
  }

  /** Take back an execution its thread has not claimed (its cell still holds the dispatch id). */
  #reclaim(thread: PoolThread, flight: Flight): boolean {
    if (!thread.claims || flight.cell < 0 || Atomics.compareExchange(thread.claims, flight.cell, flight.d, 0) !== flight.d) return false;
    const i = thread.staged.indexOf(flight.k);
    if (i >= 0) thread.staged.splice(i, 1);
    thread.cellOwner[flight.cell] = 0;
    flight.cell = -1;
    flight.thread = undefined;
    flight.d = 0;
    return true;
  }

  /**
   * Place again, ahead of anything held, executions taken back from a thread. One already counted
   * as begun keeps its place in the gate and its time limit, and goes straight to a new session.
   */
  #placeAgain(again: Flight[]): void {
    const waiting: Flight[] = [];
    for (const flight of again) {
      if (flight.stop) this.#settle(flight, flight.stop);
      else if (flight.started) this.#startSession(flight, this.#hasIdleThread() ? undefined : new AbortController());
      else waiting.push(flight);
    }
    if (waiting.length > 0) this.#held.unshift(...waiting);
    this.#wake();
  }

  /** piscina rejected a session: it never reached a thread, could not be posted, or its thread is gone. */
  async #onRejected(flight: Flight, error: unknown): Promise<void> {
    const thread = flight.thread;
    if (!thread) {
      // Never reached a thread: removed from piscina's queue by a stop, the pool closed, or no
      // thread could be started for it.
      if (!flight.settled) this.#settle(flight, flight.stop ?? this.#notTaken(flight, error));
      return;
    }
    if (thread.alive && thread.error === undefined && (error as Error)?.name === 'DataCloneError' && thread.running === flight.k) {
      // piscina could not post the task: the input holds something structured clone refuses.
      // The thread never saw it and stays in service, idle in piscina's books.
      thread.session = false;
      thread.running = undefined;
      const again = this.#reclaimStaged(thread);
      this.#settle(flight, unserializableError('The input', error));
      this.#placeAgain(again);
      return;
    }
    // The thread is gone or going: piscina rejects as soon as it learns, before the exit event,
    // which is where the lane deals with the thread's executions (see #onThreadGone).
    thread.drain();
    await exitedWithin(thread, EXIT_WAIT_MS);
    if (!thread.gone) {
      endThread(thread, { kind: 'terminated' });
      this.#onThreadGone(thread);
    }
  }

  #notTaken(flight: Flight, error: unknown): ExecutionError {
    if (this.#closing) return new ShuttingDownError('The worker-pool backend shut down before this execution started', { details: { phase: 'queued' } });
    const message = (error as Error)?.message ?? String(error);
    if (String((error as { code?: unknown })?.code ?? '').startsWith('ERR_WORKER')) {
      return new WorkerCrashedError(`No worker thread could be started for handler "${flight.task.handlerId}" of plugin "${flight.task.pluginId}": ${message}`, {
        details: { reason: 'exit', phase: 'thread-start', message, pluginId: flight.task.pluginId, handlerId: flight.task.handlerId },
        cause: error,
      });
    }
    // piscina's own queue refused it; BaseBackend's admission should make that impossible.
    return new QueueFullError(`The worker pool could not take the execution: ${message}`, { cause: error });
  }

  #onStop(flight: Flight, reason: ExecutionError): void {
    if (flight.settled) return;
    flight.stop = reason;
    const thread = flight.thread;
    if (!thread) {
      const held = this.#held.indexOf(flight);
      if (held >= 0) {
        // Held here: it never runs.
        this.#held.splice(held, 1);
        this.#settle(flight, reason);
        return;
      }
      // Still in piscina's queue: taken out (it never runs), or, without a signal, its thread
      // is ended the moment it gets one (see #balance).
      flight.abort?.abort(reason);
      return;
    }
    if (!flight.started) {
      // Waiting behind another execution on its thread: taken back, it never runs.
      if (this.#takeBack(flight)) {
        this.#settle(flight, reason);
        return;
      }
      // The thread has just begun it (the host has not heard yet): the cancel finds it running,
      // and #promote ends it as below.
      try {
        thread.send({ k: flight.k, m: { type: 'cancel', reason: serializeError(reason) } });
      } catch {
        // No channel: the thread is going, and its exit deals with it (see #onThreadGone).
      }
      return;
    }
    this.#stopRunning(flight, reason);
  }

  /** Stop an execution its thread is running: the caller's abort gets a grace period; anything else ends the thread now. */
  #stopRunning(flight: Flight, reason: ExecutionError): void {
    const thread = flight.thread!;
    if (reason?.code === 'ABORTED' && this.#settings.abortGraceMs > 0 && thread.port) {
      // The caller's abort: ctx.signal fires in the thread now; a handler that honours it
      // finishes and keeps its thread. One that does not is terminated after the grace period.
      try {
        thread.send({ k: flight.k, m: { type: 'cancel', reason: serializeError(reason) } });
        flight.graceTimer = setTimeout(() => this.#terminate(flight), this.#settings.abortGraceMs);
        return;
      } catch {
        // No way to tell it: terminate.
      }
    }
    this.#terminate(flight);
  }

  /** End the thread running `flight` now; piscina rejects the task and starts a replacement. */
  #terminate(flight: Flight): void {
    flight.graceTimer = undefined;
    if (!flight.settled && flight.thread) endThread(flight.thread, { kind: 'terminated' });
  }

  #settle(flight: Flight, error?: unknown): void {
    if (flight.settled) return;
    flight.settled = true;
    if (flight.graceTimer) clearTimeout(flight.graceTimer);
    flight.control.onStop(undefined);
    flight.session?.close();
    this.#flights.delete(flight.k);
    const thread = flight.thread;
    if (thread?.running === flight.k) thread.running = undefined;
    const ran = flight.holdsRun;
    this.#releaseRun(flight);
    if (error !== undefined) {
      flight.reject(error);
    } else {
      try {
        flight.resolve(unwrapRunnerResult(flight.result!));
      } catch (failure) {
        flight.reject(failure);
      }
    }
    if (ran && !this.#gate.full) this.#gate.freed();
  }

  /** Terminate every thread (executions have ended or been stopped by then). */
  async close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#moveTimer);
    // Threads already on their way out (executions just stopped) must be gone first: piscina
    // starts a replacement for any thread whose exit it learns of after destroy() has returned.
    const live = new Set(this.#pool.threads);
    const leaving = [...this.#threads.values()].filter((t) => !live.has(t.worker));
    await settleWithin(Promise.all(leaving.map((t) => t.exited)), CLOSE_WAIT_MS);
    for (let round = 0; round < 3 && this.#pool.threads.length > 0; round++) {
      await settleWithin(this.#pool.destroy(), CLOSE_WAIT_MS);
    }
    const threads = [...this.#threads.values()];
    await settleWithin(Promise.all(threads.map((t) => t.exited)), CLOSE_WAIT_MS);
    for (const thread of threads) {
      thread.port?.close();
      thread.port = undefined;
    }
    this.#pool.removeAllListeners();
  }

  snapshot(): { threads: number; busy: number; idle: number; queued: number; staged: number; held: number } {
    let busy = 0;
    let staged = 0;
    for (const thread of this.#threads.values()) {
      if (thread.running !== undefined) busy++;
      staged += thread.staged.length;
    }
    const threads = this.#pool.threads.length;
    return { threads, busy, idle: Math.max(0, threads - busy), queued: this.#pool.queueSize, staged, held: this.#held.length };
  }
}

/** A piscina pool; a Worker that cannot even be constructed (bad execArgv) is an options problem. */
function createPool(options: PiscinaOptions): Piscina<ThreadTask, ThreadAck> {
  try {
    return new Piscina<ThreadTask, ThreadAck>(options);
  } catch (error) {
    throw new ValidationError(`Invalid worker-pool backend options: no worker thread can be started: ${(error as Error)?.message ?? String(error)}`, {
      details: { code: (error as { code?: unknown })?.code ?? null },
      cause: error,
    });
  }
}

/**
 * Terminate a thread on purpose. piscina learns of it from the exit event, like any thread
 * death: it rejects the task that was on it and starts a replacement if the pool needs one.
 */
function endThread(thread: PoolThread, why: NonNullable<PoolThread['endedBy']>): void {
  if (!thread.alive) return;
  thread.endedBy ??= why;
  void thread.worker.terminate();
}

/** Wait for a thread's exit event, at most `ms` (the timer is cleared either way). */
function exitedWithin(thread: PoolThread, ms: number): Promise<void> {
  if (!thread.alive) return Promise.resolve();
  return settleWithin(thread.exited, ms);
}

function settleWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    promise.then(done, done);
  });
}
