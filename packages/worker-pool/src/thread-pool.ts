import { ShuttingDownError } from '@kb-labs/plugin-execution-core';
import { clearInterval, monotonicNow, recordRunnerCrash, recordRunnerStart, setInterval, setTimeout, settlesWithin, type DispatchControl, type RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';
import { crashError, crashReason, noThreadStarts, startFailureError } from './crash.js';
import type { ResolvedPoolOptions } from './options.js';
import { PoolThread } from './pool-thread.js';
import { CLOSE_WAIT_MS, TAKE_CHECK_EVERY_MS, TAKE_WITHIN_MS } from './thread-deadlines.js';
import type { Execution, ThreadEvents, WorkerPoolRunnerStats } from './pool-contract.js';
import { handlerKey } from './task-wire.js';
import { oldLoadFirst, ownTaskFirst, takeIdle } from './idle-choice.js';
import { StaleWait } from './stale-wait.js';
import { newLane, takeWaiting, type Lane } from './thread-lane.js';
import type { RetireReason, StaleReason } from './thread-protocol.js';
import { poolProblems, unstartedReason, warnStuckLater } from './pool-problems.js';
import { poolStats } from './pool-stats.js';

/** How often an execution whose thread died before beginning it goes to another thread. */
const MAX_REDISPATCH = 2;

/**
 * The backend's threads: one execution per thread at a time, at most `maxThreads` in all. An
 * execution goes to an idle thread of its lane, else waits (FIFO) for one started for it.
 * BaseBackend hands over no more executions than `maxThreads` run at once, so one always comes:
 * an idle thread of another lane goes to make room for it (#makeRoom).
 */
export class ThreadPool {
  readonly #options: ResolvedPoolOptions;
  readonly #entry: URL;
  readonly #lanes = new Map<number | 'default', Lane>();
  readonly #threads = new Set<PoolThread<Lane>>();
  /** Threads that did not exit when terminated (PoolThread.abandoned): no longer the pool's, until they exit. */
  readonly #abandoned = new Set<PoolThread<Lane>>();
  /** Threads stuck the same way once `maxThreads` are abandoned: they keep their places. */
  readonly #stuckInPlace = new Set<PoolThread<Lane>>();
  readonly #staleWait = new StaleWait<PoolThread<Lane>>();
  readonly #events: ThreadEvents;
  readonly #counts = { started: 0, crashed: 0, terminated: 0, stopped: 0, redispatched: 0, failedToStart: 0 };
  readonly #retired: Record<RetireReason, number> = { 'globals-tampered': 0, 'handles-left': 0, recycled: 0, 'plugin-reloaded': 0, 'plugin-unregistered': 0, 'left-busy': 0 };
  readonly #takenCheck: NodeJS.Timeout;
  /** Start failures since the last thread that started, and the last one's message (for health()). */
  #failing = { streak: 0, last: '' };
  #nextKey = 1;
  /** Shutting down: no thread is started to keep `minThreads` (only for executions waiting), and once closing, none at all. */
  #draining = false;
  #closing = false;
  /** Which load of a plugin's code new executions run (RegisteredPlugin.moduleKey); undefined once it is unregistered. */
  readonly #currentLoad: (pluginId: string) => number | undefined;

  constructor(options: ResolvedPoolOptions, entry: URL, currentLoad: (pluginId: string) => number | undefined) {
    this.#options = options;
    this.#entry = entry;
    this.#currentLoad = currentLoad;
    this.#events = {
      ready: (thread) => {
        (thread as PoolThread<Lane>).lane.starting--;
        this.#failing.streak = 0;
        this.#onIdle(thread as PoolThread<Lane>);
      },
      idle: (thread) => this.#onIdle(thread as PoolThread<Lane>),
      owing: (thread) => (thread as PoolThread<Lane>).lane.verdicts.owe(thread),
      verdict: (thread) => this.#onVerdict(thread as PoolThread<Lane>),
      gone: (thread) => {
        this.#stuckInPlace.delete(thread as PoolThread<Lane>);
        if (!this.#abandoned.delete(thread as PoolThread<Lane>)) this.#onGone(thread as PoolThread<Lane>);
      },
      stuck: (thread) => this.#onStuck(thread as PoolThread<Lane>),
    };
    this.#takenCheck = setInterval(() => this.#checkTaken(), TAKE_CHECK_EVERY_MS).unref();
    const lane = this.#lane('default', options.minThreads, options.resourceLimits?.maxOldGenerationSizeMb);
    try {
      for (let i = 0; i < options.minThreads; i++) this.#spawn(lane);
    } catch (error) {
      // Nothing of a pool that cannot start stays: its check, and the threads started before the one that failed.
      clearInterval(this.#takenCheck);
      for (const thread of this.#threads) thread.end({ kind: 'stopped' });
      throw noThreadStarts(error);
    }
  }

  /** Run one execution; resolves with the handler's data or rejects with an ExecutionError. */
  run(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#place({ k: this.#nextKey++, task, control, resolve, reject, stop: undefined, redispatches: 0 }, false);
    });
  }

  /** The backend began to shut down: a thread that goes is replaced only for an execution waiting for one. */
  drain(): void {
    this.#draining = true;
  }

  /** Terminate every thread (BaseBackend has ended or stopped every execution by now). */
  async close(): Promise<void> {
    this.#closing = this.#draining = true;
    clearInterval(this.#takenCheck);
    const closed = new ShuttingDownError('The worker-pool backend shut down before this execution started', { details: { phase: 'queued' } });
    for (const lane of this.#lanes.values()) while (lane.waiting.length > 0) this.#fail(takeWaiting(lane, 0), closed);
    const threads = [...this.#threads];
    for (const thread of threads) thread.stop();
    await settlesWithin(Promise.all(threads.map((thread) => thread.done)), CLOSE_WAIT_MS);
  }

  /**
   * A plugin was reloaded (its load is now `current`, RegisteredPlugin.moduleKey) or unregistered
   * (`current` Infinity): threads that ran an older load of it have its old modules loaded, so
   * they take no more work — an idle one is retired now, a busy one once its execution ends —
   * and new executions load the new code on fresh threads.
   */
  retireThreadsOf(pluginId: string, current: number, reason: StaleReason): void {
    for (const thread of this.#threads) {
      const ran = thread.pluginLoads.get(pluginId);
      if (ran === undefined || ran >= current || thread.stale) continue;
      thread.stale = reason;
      const idle = thread.lane.idle.indexOf(thread);
      if (idle < 0) continue;
      thread.lane.idle.splice(idle, 1);
      thread.end({ kind: 'retired', reason });
      // Its replacement starts now, not once it is gone: warm by the time the next execution comes.
      if (this.#staying(thread.lane) < thread.lane.minThreads && !this.#draining) this.#start(thread.lane);
    }
  }

  /**
   * A handler that answered but left a loop running on its thread (a microtask or nextTick loop
   * never yields) would leave the next execution handed there untaken until its time limit, and
   * blamed for it. A thread that has not taken its execution within TAKE_WITHIN_MS is ended, and
   * the execution, which never began, goes to another thread. An idle one seen not waiting for a
   * task for TAKE_WITHIN_MS (checks in a row) is ended too: it would spin a core for as long as it is kept.
   */
  #checkTaken(): void {
    const now = monotonicNow();
    for (const thread of this.#threads) {
      if (thread.leftBusy(now, TAKE_WITHIN_MS)) thread.end({ kind: 'retired', reason: 'left-busy' });
      else if (thread.idleSpinning(1 + TAKE_WITHIN_MS / TAKE_CHECK_EVERY_MS)) {
        // The same, seen before anything was handed to it: it takes nothing more.
        const idle = thread.lane.idle.indexOf(thread);
        if (idle >= 0) thread.lane.idle.splice(idle, 1);
        thread.end({ kind: 'retired', reason: 'left-busy' });
      }
    }
  }

  /** Why the pool is unhealthy: threads that fail to start, threads that could not be stopped. */
  problems(): string[] {
    return poolProblems(this.#failing, this.#abandoned.size, this.#stuckInPlace.size, this.#options.maxThreads);
  }

  /** Why an execution had no thread yet (for the TIMEOUT of one that never started). */
  unstartedReason(): string {
    return unstartedReason(this.#failing, this.#stuckInPlace.size);
  }

  stats(): WorkerPoolRunnerStats {
    return poolStats(this.#lanes.values(), this.#threads, this.#options, { ...this.#counts, retired: { ...this.#retired }, abandoned: this.#abandoned.size });
  }

  /** To an idle thread of its lane, else into the lane's queue (`first`: at its head). */
  #place(execution: Execution, first: boolean): void {
    const lane = this.#laneFor(execution.task.memoryMb);
    const key = handlerKey(execution.task);
    // A thread still starting counts as room: the task waits for it rather than go to a bound one.
    const thread = this.#staleWait.take(execution.task, (stale) => stale.lane === lane, this.#currentLoad) ?? takeIdle(lane.idle, key, () => this.#canGrow(lane));
    if (thread) {
      if (!this.#handTo(thread, execution)) this.#onIdle(thread);
      return;
    }
    if (first) lane.waiting.unshift(execution);
    else lane.waiting.push(execution);
    // A thread of its handler whose verdict is still to come takes it then (#onIdle), as a thread starting would.
    lane.verdicts.wait(execution, key);
    // Stopped while it waits: it never runs.
    execution.stopListening = execution.control.onStop((reason) => {
      const i = lane.waiting.indexOf(execution);
      if (i >= 0) this.#fail(takeWaiting(lane, i), reason);
    });
    this.#grow(lane);
  }

  /**
   * A thread can start for `lane` within maxThreads in the pool (not its lane alone): one starting that nothing waits
   * for yet (nor is awaited: VerdictWaits), room, or another lane's idle thread to make go (#makeRoom). Else a thread started beside an idle bound one is one too many.
   */
  #canGrow(lane: Lane): boolean {
    if (lane.starting + lane.verdicts.awaited > lane.waiting.length) return true;
    if (lane.threads >= this.#options.maxThreads) return false;
    if (this.#staying() < this.#options.maxThreads) return true;
    for (const other of this.#lanes.values()) if (other !== lane && other.idle.length > 0) return true;
    return false;
  }

  #fail(execution: Execution, error: unknown): void {
    execution.stopListening?.();
    execution.stopListening = undefined;
    execution.reject(error);
  }

  /** One thread starting per waiting execution not waiting for a verdict, as far as the lane has room (its threads on their way out make room as they go). */
  #grow(lane: Lane): void {
    while (!this.#closing && lane.waiting.length > lane.starting + lane.verdicts.awaited && lane.threads < this.#options.maxThreads) {
      this.#makeRoom(lane);
      this.#start(lane);
    }
  }

  /** At most `maxThreads` in the pool: before one starts past that, another lane's thread idle longest goes (one beyond its lane's minimum first). */
  #makeRoom(lane: Lane): void {
    if (this.#staying() < this.#options.maxThreads) return;
    const others = [...this.#lanes.values()].filter((other) => other !== lane && other.idle.length > 0);
    const from = others.find((other) => this.#staying(other) > other.minThreads) ?? others[0];
    from?.idle.shift()!.end({ kind: 'stopped' });
  }

  /** Start a thread; one that cannot even be made fails a waiting execution. */
  #start(lane: Lane): void {
    try {
      this.#spawn(lane);
    } catch (error) {
      this.#startFailed(lane, error, undefined);
    }
  }

  #spawn(lane: Lane): void {
    const o = this.#options;
    const config = { maxExecutions: o.maxExecutionsPerThread, output: { maxOutputPerStream: o.maxOutputPerStream, maxLogLineLength: o.maxLogLineLength }, execArgv: o.execArgv ?? process.execArgv };
    const settings = { entry: this.#entry, config, env: o.env, execArgv: o.execArgv, resourceLimits: lane.resourceLimits, cancelGraceMs: o.cancelGraceMs };
    this.#threads.add(new PoolThread<Lane>(lane, settings, this.#events));
    lane.threads++;
    lane.starting++;
    this.#counts.started++;
    recordRunnerStart('worker-pool');
  }

  #startFailed(lane: Lane, error: unknown, thread: PoolThread<Lane> | undefined): void {
    this.#counts.failedToStart++;
    this.#failing = { streak: this.#failing.streak + 1, last: error instanceof Error ? error.message : error !== undefined ? String(error) : `exited with code ${thread?.exitCode}` };
    // One failed start, one execution that gets no thread (of those not waiting for a verdict).
    if (lane.waiting.length <= lane.starting + lane.verdicts.awaited) return;
    const execution = takeWaiting(lane, lane.waiting.findIndex((each) => each.onVerdict === undefined));
    this.#fail(execution, startFailureError(error, thread, execution.task));
  }

  /**
   * Give `execution` to `thread`. One of a load of its plugin that is no longer current (called
   * before a reload or an unregister, started after it) leaves the thread stale: retired once no
   * more of that load waits, so a later load of the plugin never meets the modules left there.
   */
  #handTo(thread: PoolThread<Lane>, execution: Execution): boolean {
    const { pluginId, moduleKey } = execution.task;
    if (!thread.stale && moduleKey !== undefined) {
      const current = this.#currentLoad(pluginId);
      if (current !== moduleKey) thread.stale = current === undefined ? 'plugin-unregistered' : 'plugin-reloaded';
    }
    return thread.run(execution);
  }

  /** The thread is free: the next execution waiting in its lane, else the idle list (and its idle timer). */
  #onIdle(thread: PoolThread<Lane>): void {
    const lane = thread.lane;
    if (thread.endedBy) return;
    if (thread.stale) return this.#drainOldLoad(thread, true);
    ownTaskFirst(lane.waiting, thread, (waiting) => handlerKey(waiting.task));
    while (lane.waiting.length > 0) {
      // Another handler's task would be declined on a bound thread: left to the threads starting for them.
      if (thread.bound && handlerKey(lane.waiting[0]!.task) !== thread.lastHandler && lane.starting + lane.verdicts.awaited >= lane.waiting.length) break;
      if (this.#handTo(thread, takeWaiting(lane, 0))) return;
    }
    // Idle once the pool closes (its verdict came after close() began), or beyond maxThreads in the pool
    // (another lane started one while this one's verdict was still coming): it goes.
    if (this.#closing || this.#staying() > this.#options.maxThreads) return thread.end({ kind: 'stopped' });
    lane.idle.push(thread);
    if (lane.threads <= lane.minThreads) return;
    // One timer per thread, re-armed for each idle spell; it may find the thread busy or gone.
    if (thread.idleTimer) thread.idleTimer.refresh();
    else thread.idleTimer = setTimeout(() => this.#idleTimeout(thread), this.#options.idleTimeoutMs).unref();
  }

  /** Its verdict came (after #onIdle, if it stays): an execution that waited for it and is still queued (the thread went, or took another) gets a thread started. */
  #onVerdict(thread: PoolThread<Lane>): void {
    thread.lane.verdicts.settled(thread);
    this.#grow(thread.lane);
  }

  /** A stale thread takes what waits for the old load it has (oldLoadFirst), and what comes for it a little later (StaleWait), then goes. */
  #drainOldLoad(thread: PoolThread<Lane>, again: boolean): void {
    for (let next; !thread.endedBy && (next = oldLoadFirst(thread.lane.waiting, thread, this.#currentLoad)); ) {
      thread.lane.verdicts.release(next);
      if (this.#handTo(thread, next)) return;
    }
    if (thread.endedBy) return;
    if (again) this.#staleWait.wait(thread, () => this.#drainOldLoad(thread, false));
    else thread.end({ kind: 'retired', reason: thread.stale! });
  }

  #idleTimeout(thread: PoolThread<Lane>): void {
    const lane = thread.lane;
    const i = lane.idle.indexOf(thread);
    // Threads on their way out (stopped a moment ago, not gone yet) do not count towards the minimum.
    if (i < 0 || this.#staying(lane) <= lane.minThreads) return;
    lane.idle.splice(i, 1);
    thread.end({ kind: 'stopped' });
  }

  /** The lane's threads (without a lane: the pool's) that are not on their way out. */
  #staying(lane?: Lane): number {
    let staying = 0;
    for (const each of this.#threads) if ((lane === undefined || each.lane === lane) && !each.endedBy) staying++;
    return staying;
  }

  /** Terminated, it did not exit: counted as gone now (another may start in its place), its real exit ignored. */
  #onStuck(thread: PoolThread<Lane>): void {
    if (!this.#threads.has(thread)) return;
    // Each keeps its memory until its call returns (~10 MB): past maxThreads of them, a handler
    // called again and again would grow the host without end. The pool shrinks instead.
    // Its execution (stopped, and answered) lets go of the backend's slot all the same: the next
    // waits for a thread, within its time limit, rather than for a slot without one.
    if (this.#abandoned.size >= this.#options.maxThreads) {
      this.#stuckInPlace.add(thread);
      const execution = thread.release();
      if (execution) this.#onRunnerGone(thread, execution);
      // Nor will its verdict come, if it owed one.
      thread.lane.verdicts.settled(thread);
      return this.#grow(thread.lane);
    }
    this.#abandoned.add(thread);
    this.#onGone(thread);
    warnStuckLater(() => this.#abandoned.has(thread));
  }

  #onGone(thread: PoolThread<Lane>): void {
    const lane = thread.lane;
    this.#threads.delete(thread);
    this.#staleWait.forget(thread);
    // Gone before its verdict: what waited for it gets a thread started (#grow below).
    lane.verdicts.settled(thread);
    lane.threads--;
    const i = lane.idle.indexOf(thread);
    if (i >= 0) lane.idle.splice(i, 1);
    if (!thread.ready) lane.starting--;
    // Died before it loaded its entry (bad execArgv, a heap too small to start …), unless ended on purpose (counted so).
    if (!thread.ready && !thread.endedBy) this.#startFailed(lane, thread.error, thread);
    else {
      const why = thread.endedBy;
      if (why?.kind === 'retired') this.#retired[why.reason]++;
      else if ((why?.kind === 'terminated' && thread.protocolError === undefined) || (why?.kind === 'stopped' && thread.error === undefined)) this.#counts[why.kind]++;
      else {
        this.#counts.crashed++;
        recordRunnerCrash('worker-pool', crashReason(thread));
      }
    }
    const execution = thread.release();
    if (execution) this.#onRunnerGone(thread, execution);
    this.#grow(lane);
    // Back to the minimum after a thread that had started (a start that fails is not retried by itself): its lane's, and
    // the default lane's, whose thread may have gone for this one (#makeRoom). Not past maxThreads: another lane's took the place.
    if (!thread.ready || this.#draining) return;
    for (const each of new Set([lane, this.#lanes.get('default')!])) for (let n = each.minThreads - each.threads; n > 0 && this.#staying() < this.#options.maxThreads; n--) this.#start(each);
  }

  /**
   * The thread running `execution` is gone, its channel read to the end (an answer would have
   * settled it): the stop that ended it, another thread if it never began there, else a crash.
   */
  #onRunnerGone(thread: PoolThread<Lane>, execution: Execution): void {
    if (execution.stop) return this.#fail(execution, execution.stop);
    if (thread.protocolError !== undefined && thread.tookLast) return this.#fail(execution, crashError(thread, execution.k, execution.task, thread.lane.heapLimitMb));
    // A thread declines a task at most once, and is retired: not counted against the execution.
    if (thread.declined && !this.#closing) {
      this.#counts.redispatched++;
      return this.#place(execution, true);
    }
    // Died of something an earlier execution left behind before it began this one: it never took
    // the task (its channel closed, say), or took it and its runtime never said it began it (its
    // last words, which plugin code can forge or leave from an earlier execution, are no proof).
    const neverBegan = !thread.tookLast || !thread.began(execution.k);
    if (neverBegan && execution.redispatches < MAX_REDISPATCH && !this.#closing) {
      execution.redispatches++;
      this.#counts.redispatched++;
      return this.#place(execution, true);
    }
    this.#fail(execution, crashError(thread, execution.k, execution.task, thread.lane.heapLimitMb));
  }

  #laneFor(memoryMb: number | undefined): Lane {
    const fallback = this.#lanes.get('default')!;
    if (memoryMb === undefined || memoryMb === fallback.heapLimitMb) return fallback;
    return this.#lanes.get(memoryMb) ?? this.#lane(memoryMb, 0, memoryMb);
  }

  #lane(key: number | 'default', minThreads: number, heapLimitMb: number | undefined): Lane {
    const lane = newLane(key, minThreads, heapLimitMb, this.#options.resourceLimits);
    this.#lanes.set(key, lane);
    return lane;
  }
}
