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
import { isThreadHello, type RetireReason, type ThreadAck, type ThreadConfig, type ThreadTask, type ThreadToHost } from './thread-protocol.js';

type PiscinaOptions = NonNullable<ConstructorParameters<typeof Piscina>[0]>;
type Balancer = NonNullable<PiscinaOptions['loadBalancer']>;

/** How often an execution whose thread died before starting it is handed to another thread. */
const MAX_REDISPATCH = 2;
/** How often one waiting behind another execution may lose its thread (to that one's crash, timeout …) and be handed on. */
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
 * one waiting behind each running one, see thread-protocol.ts), and the lanes to wake when
 * an execution stops running.
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
  thread: PoolThread | undefined;
  /** Handed to `thread` behind its running execution (begins when that one has answered). */
  target: PoolThread | undefined;
  /** The host knows it has begun (the time limit runs), and since when (performance.now()). */
  started: boolean;
  startedAt: number;
  /** Counted in the gate's `running`. */
  holdsRun: boolean;
  /** Its current dispatch: replies to an earlier one (taken back from a thread) are stale. */
  d: number;
  /** Its claim cell on the thread it waits on. */
  cell: number;
  replaced: number;
  /** piscina's reply arrived: the thread is free again in piscina's books. */
  acked: boolean;
  /** Logs, events and RPC the thread sent for it, and (from the reply) how many it sent. */
  heard: number;
  expected: number;
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
 * Admission (who waits, QUEUE_FULL) is BaseBackend's; it hands over up to twice as many
 * executions as may run. The lane places each one:
 * - the gate has room: on an idle thread (it starts now), or, none being ready, in piscina's
 *   queue until a thread has finished starting;
 * - else behind a running execution on a thread with nobody waiting there yet (see
 *   thread-protocol.ts), or, when there is none, held here until something stops running.
 * When a thread falls idle while an execution still waits behind another one elsewhere, that one
 * is taken back and placed again, so that nothing waits behind a slow handler while a thread idles.
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
      // The running one and one waiting behind it (the thread runs them one after the other).
      concurrentTasksPerWorker: 2,
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
        target: undefined,
        started: false,
        startedAt: 0,
        holdsRun: false,
        d: 0,
        cell: 0,
        replaced: 0,
        acked: false,
        heard: 0,
        expected: 0,
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
    flight.target = undefined;
    flight.started = false;
    flight.acked = false;
    flight.heard = 0;
    flight.expected = 0;
    if (!this.#gate.full) {
      this.#gate.running++;
      flight.holdsRun = true;
      this.#dispatch(flight, this.#hasIdleThread() ? undefined : new AbortController());
      return true;
    }
    // Behind a running execution; not past executions held here, nor past piscina's queue.
    if (!first || this.#pool.queueSize > 0) return false;
    const host = this.#stagingThread();
    if (!host) return false;
    flight.target = host;
    this.#dispatch(flight, undefined);
    return true;
  }

  /** A thread whose running execution can have one waiting behind it. */
  #stagingThread(): PoolThread | undefined {
    for (const thread of this.#threads.values()) {
      if (thread.running === undefined || thread.staged !== undefined || thread.stale > 0 || !thread.claims || !thread.alive || thread.endedBy) continue;
      const running = this.#flights.get(thread.running);
      // piscina never puts a second task next to one that has an abort signal.
      if (!running || running.abort || running.stop || running.settled) continue;
      return thread;
    }
    return undefined;
  }

  /** Place held executions while the gate allows; then move executions waiting behind others to idle threads. */
  pump(): void {
    if (this.#closing) return;
    while (this.#held.length > 0 && this.#tryPlace(this.#held[0]!, true)) this.#held.shift();
    while (this.#held.length === 0 && !this.#gate.full && this.#hasIdleThread()) {
      let moved = false;
      let soonest = Number.POSITIVE_INFINITY;
      const now = performance.now();
      for (const thread of this.#threads.values()) {
        const flight = thread.staged === undefined ? undefined : this.#flights.get(thread.staged);
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

  /**
   * Take an execution back from the thread it waits on, if that thread has not begun it: it then
   * never runs there (see the claim cell in thread-protocol.ts).
   */
  #takeBack(flight: Flight): boolean {
    const thread = flight.thread;
    if (!thread?.claims || flight.started || thread.staged !== flight.k) return false;
    if (Atomics.compareExchange(thread.claims, flight.cell, flight.d, 0) !== flight.d) return false;
    thread.staged = undefined;
    // piscina still counts the task on the thread until the thread answers it (unrun).
    thread.stale++;
    flight.thread = undefined;
    flight.d = 0;
    return true;
  }

  #dispatch(flight: Flight, abort: AbortController | undefined): void {
    flight.abort = abort;
    const d = (flight.d = this.#nextDispatch++);
    if (this.#nextDispatch > 0x7fffffff) this.#nextDispatch = 1;
    const target = flight.target;
    const payload: ThreadTask & { [QUEUE_OPTIONS]: Flight } = { k: flight.k, task: flight.task, [QUEUE_OPTIONS]: flight };
    if (target) {
      // Two cells, used in turn: the one waiting now may not have been claimed yet by the time
      // the host has seen its turn come and hands over the next.
      payload.d = d;
      payload.c = target.nextCell;
      flight.cell = target.nextCell;
      target.nextCell ^= 1;
      Atomics.store(target.claims!, payload.c, d);
    }
    let reply: Promise<ThreadAck>;
    try {
      reply = this.#pool.run(payload, abort ? { signal: abort.signal } : undefined);
    } catch (error) {
      // piscina starts a thread inside run() when it needs one, and Worker's constructor throws
      // synchronously (ERR_WORKER_INVALID_EXEC_ARGV, out of resources …).
      reply = Promise.reject(error);
    }
    // Wake a thread that busy-waits for work (see worker-entry.ts); the message is on its port by now.
    const posted = target ?? flight.thread;
    if (posted?.claims) Atomics.add(posted.claims, 2, 1);
    reply.then(
      (ack) => {
        if (flight.d === d) this.#onAck(flight, ack);
        else if (target) this.#onStale(target);
      },
      (error: unknown) => {
        if (flight.d === d) void this.#onRejected(flight, error);
      },
    );
    // It waits for a thread: piscina may have started one just now.
    if (!flight.thread) this.#adopt();
  }

  /** The thread answered (unrun) for an execution taken back from it: piscina frees the place. */
  #onStale(thread: PoolThread): void {
    thread.stale--;
    if (!this.#gate.full) this.pump();
  }

  /** It no longer runs (or never will): give its place in the gate back. */
  #releaseRun(flight: Flight): void {
    if (!flight.holdsRun) return;
    flight.holdsRun = false;
    this.#gate.running--;
  }

  /** The thread answered for its running execution: the one waiting there has begun. */
  #promote(thread: PoolThread): void {
    const k = thread.staged;
    thread.staged = undefined;
    const flight = k === undefined ? undefined : this.#flights.get(k);
    if (!flight || flight.settled) return;
    thread.running = k;
    flight.target = undefined;
    flight.started = true;
    flight.startedAt = performance.now();
    flight.holdsRun = true;
    this.#gate.running++;
    flight.control.started();
    // Stopped while it waited: the thread got the cancel, which finds it running now.
    if (flight.stop) this.#stopRunning(flight, flight.stop);
  }

  /** Track threads piscina started that we have not seen yet (so a start-up failure is noticed). */
  #adopt(): void {
    for (const worker of this.#pool.threads) if (!this.#threads.has(worker.threadId)) this.#track(worker.threadId);
  }

  /** Whether piscina will hand the next task to a thread at once (so it needs no abort signal). */
  #hasIdleThread(): boolean {
    for (const thread of this.#threads.values()) {
      if (thread.ready && thread.alive && thread.running === undefined && thread.staged === undefined && thread.stale === 0 && thread.endedBy === undefined) {
        return true;
      }
    }
    return false;
  }

  /**
   * piscina's load balancer, used to learn which thread each execution goes to (the flight
   * rides along under piscina's queueOptionsSymbol, which is never sent to the thread): one that
   * is to start goes to a thread with nothing on it; one that is to wait goes to its target.
   */
  readonly #balance: Balancer = (task, workers) => {
    const flight = (task as unknown as Record<symbol, Flight | null>)[QUEUE_OPTIONS];
    let target = flight?.target;
    if (target && !workers.some((w) => w.id === target!.id && w.currentUsage === 1 && !w.terminating && !w.destroyed)) {
      // Not expected (the lane checked just before): start it like any other instead.
      target = flight!.target = undefined;
      if (!flight!.holdsRun) {
        flight!.holdsRun = true;
        this.#gate.running++;
      }
    }
    for (const worker of workers) {
      if (worker.terminating || worker.destroyed) continue;
      if (target ? worker.id !== target.id : worker.currentUsage !== 0) continue;
      const thread = this.#track(worker.id);
      if (!thread?.alive || thread.endedBy) continue;
      if (flight) {
        flight.thread = thread;
        flight.control.setRunner({ workerId: thread.id });
        if (target) {
          thread.staged = flight.k;
        } else {
          thread.running = flight.k;
          flight.started = true;
          flight.startedAt = performance.now();
          flight.control.started();
          // Stopped while it waited in piscina's queue without a signal: piscina posts it right
          // after this returns; end the thread before it gets far.
          if (flight.stop || flight.settled) queueMicrotask(() => endThread(thread, { kind: 'terminated' }));
        }
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
    const flight = this.#flights.get(message.k);
    if (!flight || flight.settled) return;
    if ('out' in message) {
      flight.heard++;
      const level = message.out === 'stdout' ? 'info' : 'error';
      for (const line of message.lines) flight.control.log(level, String(line), undefined, message.out);
      return;
    }
    if (message.m.type !== 'result') {
      flight.heard++;
      flight.session ??= new HostSession(flight.control, (m) => flight.thread?.send({ k: flight.k, m }));
      flight.session.handle(message.m);
      return;
    }
    flight.result = message.m;
    flight.session?.close();
    if ('retire' in message && message.retire) {
      // The thread asked not to be reused and will not report itself free: end it (piscina
      // replaces it); the result stands.
      endThread(thread, { kind: 'retired', reason: message.retire });
    } else {
      this.#settleIfComplete(flight);
    }
  };

  readonly #onThreadExit = (thread: PoolThread): void => {
    this.#threads.delete(thread.id);
    const counters = this.#counters;
    // piscina starts a replacement from its own exit handler, which runs right after this one.
    queueMicrotask(() => this.#adopt());
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
      return;
    }
    const end: ThreadEnd = thread.end;
    if (end === 'retired' && thread.endedBy?.kind === 'retired') counters.retired[thread.endedBy.reason]++;
    else if (end === 'crashed') counters.crashed++;
    else if (end === 'terminated') counters.terminated++;
    else counters.stopped++;
  };

  #onAck(flight: Flight, ack: ThreadAck): void {
    if (ack.w) {
      this.#onWithdrawn(flight);
      return;
    }
    const thread = flight.thread;
    if (thread && thread.running === flight.k) {
      thread.running = undefined;
      this.#releaseRun(flight);
      this.#promote(thread);
    }
    this.#onAnswer(flight, ack);
    if (!this.#gate.full) this.#gate.freed();
  }

  #onAnswer(flight: Flight, ack: ThreadAck): void {
    if (flight.settled) return;
    flight.acked = true;
    flight.expected = ack.n;
    if (ack.r) flight.result = ack.r;
    // Whatever the thread sent on the channel was posted before its reply, so it is queued on
    // the port by now if not yet handled: read it synchronously, in order.
    if (flight.heard < flight.expected || !flight.result) flight.thread?.drain();
    if (this.#settleIfComplete(flight)) return;
    // Not all there (the thread's hello itself may still be on its way): it will come, or the
    // thread will die trying.
    void flight.thread?.exited.then(() => {
      if (!flight.settled) this.#settle(flight, crashError(flight.thread!, flight.k, flight.task, this.heapLimitMb));
    });
  }

  /**
   * The thread answered "not begun" for the current dispatch of an execution: it lost the claim
   * the host did not take. Not expected (only the host clears a claim cell); handled all the same:
   * the execution never began there, so it goes elsewhere.
   */
  #onWithdrawn(flight: Flight): void {
    const thread = flight.thread;
    if (thread?.staged === flight.k) thread.staged = undefined;
    if (thread?.running === flight.k) {
      // The host had counted it as begun (its time limit already runs), but it has not run.
      thread.running = undefined;
      this.#releaseRun(flight);
    }
    if (flight.settled) return;
    if (flight.stop) this.#settle(flight, flight.stop);
    else this.#place(flight);
    if (!this.#gate.full) this.#gate.freed();
  }

  /** Settle once piscina has freed the thread and everything the execution sent has been handled. */
  #settleIfComplete(flight: Flight): boolean {
    if (!flight.acked || !flight.result || flight.heard < flight.expected) return false;
    this.#settle(flight);
    return true;
  }

  async #onRejected(flight: Flight, error: unknown): Promise<void> {
    if (flight.settled) return;
    const thread = flight.thread;
    if (thread?.alive && thread.error === undefined && (error as Error)?.name === 'DataCloneError') {
      // piscina could not post the task: the input holds something structured clone refuses.
      // The thread never saw it and stays in service.
      this.#settle(flight, unserializableError('The input', error));
      return;
    }
    if (!thread) {
      // Never reached a thread: removed from piscina's queue by a stop, the pool closed, or no
      // thread could be started for it.
      this.#settle(flight, flight.stop ?? this.#notTaken(flight, error));
      return;
    }

    // The thread is gone or going: piscina rejects as soon as it learns, before the exit event.
    thread.drain();
    await exitedWithin(thread, EXIT_WAIT_MS);
    if (flight.settled) return;
    // Its answer may be in the thread's last words (see CrashReport.answered), piscina having dropped it.
    const answered = thread.reports.find((r) => r.answered?.k === flight.k)?.answered;
    if (answered && !flight.result && answered.ack.r) flight.result = answered.ack.r;
    const startedHere = flight.heard > 0 || answered !== undefined || thread.reports.some((r) => r.k === flight.k);
    if (!flight.started && !startedHere) {
      // It waited behind the execution that ended the thread (a crash, a timeout, a retirement):
      // it never began, so it goes to another thread.
      if (thread.staged === flight.k) thread.staged = undefined;
      if (flight.stop) {
        this.#settle(flight, flight.stop);
      } else if (flight.replaced < MAX_REPLACE && !this.#closing) {
        flight.replaced++;
        this.#counters.redispatched++;
        this.#place(flight);
      } else {
        this.#settle(flight, crashError(thread, flight.k, flight.task, this.heapLimitMb));
      }
      return;
    }
    if (flight.result) {
      // It answered before it went (a retirement, or a crash after the fact): the answer stands.
      this.#settle(flight);
      return;
    }
    if (flight.stop) {
      this.#settle(flight, flight.stop);
      return;
    }
    if (!startedHere && thread.reports.length > 0 && flight.redispatches < MAX_REDISPATCH && !this.#closing) {
      // The thread died of something left over from an earlier execution before it began this
      // one (its report names another execution or none): this one never ran, so it can go to
      // another thread instead of failing for someone else's crash.
      flight.redispatches++;
      this.#counters.redispatched++;
      if (thread.running === flight.k) thread.running = undefined;
      this.#releaseRun(flight);
      this.#place(flight);
      return;
    }
    this.#settle(flight, crashError(thread, flight.k, flight.task, this.heapLimitMb));
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
        // No channel: the thread is going, and it goes with it (see #onRejected).
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
    if (thread?.staged === flight.k) thread.staged = undefined;
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
      if (thread.staged !== undefined) staged++;
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
