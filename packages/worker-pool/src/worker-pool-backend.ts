import { BaseBackend, type DispatchControl, type IsolationReport, type RunnerTask } from '@kb-labs/plugin-execution-core';
import { resolvePoolOptions, type ResolvedPoolOptions, type WorkerPoolBackendOptions } from './options.js';
import { PoolCounters, PoolLane, RunGate } from './pool-lane.js';
import { STAGE_DEPTH } from './thread-protocol.js';

// Next to this module in both builds (tsup's shims give the CJS build an import.meta.url). The
// CommonJS build of the entry, on purpose: piscina's thread first tries `require()` on the entry,
// which on Node >= 20.19 would be require(esm) of an ES module — and a require(esm) that meets an
// import() of the same module still in flight in that thread makes V8 abort the whole process
// ("IsGraphAsync must be used on an instantiated module"; see nodejs/node#59703). A CommonJS entry
// is loaded synchronously and cached, so there is no module job to race with.
const WORKER_ENTRY = new URL('./worker-entry.cjs', import.meta.url).href;

/**
 * Runs handlers on a pool of reused worker threads (piscina), one execution per thread at a time.
 *
 * What a thread isolates: a busy loop (terminated on timeout), a crash (process.exit, uncaught
 * exception, unhandled rejection, out of memory: WORKER_CRASHED, the thread is replaced), the
 * heap (per-thread cap), globals and the environment (each execution starts from clean ones).
 * What it does not: the file system, the network and other process-wide resources are the
 * host's. See docs/backends/worker-pool.md.
 */
export class WorkerPoolBackend extends BaseBackend {
  readonly #settings: ResolvedPoolOptions;
  readonly #counters = new PoolCounters();
  readonly #lanes = new Map<number | 'default', PoolLane>();
  readonly #gate: RunGate;

  constructor(options: WorkerPoolBackendOptions = {}) {
    const settings = resolvePoolOptions(options);
    const running = options.maxConcurrency ?? settings.maxThreads;
    // Up to STAGE_DEPTH more per running one are handed to its thread ahead of time (they count
    // as queued): the thread begins the next as soon as it has answered, and the time limit starts then.
    super('worker-pool', options, { concurrency: running, lookahead: running * STAGE_DEPTH, reportsStart: true });
    this.#settings = settings;
    this.#gate = new RunGate(running);
    this.#lanes.set('default', this.#createLane('default', settings.minThreads, settings.resourceLimits?.maxOldGenerationSizeMb));
  }

  protected dispatch(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    return this.#laneFor(task.memoryMb).run(task, control);
  }

  protected async closeRunners(): Promise<void> {
    await Promise.all([...this.#lanes.values()].map((lane) => lane.close()));
  }

  protected override runnerStats(): Record<string, unknown> {
    const total = { threads: 0, busy: 0, idle: 0, queued: 0, staged: 0, held: 0 };
    const lanes: Record<string, { threads: number; busy: number; heapLimitMb?: number }> = {};
    for (const lane of this.#lanes.values()) {
      const s = lane.snapshot();
      for (const key of Object.keys(total) as Array<keyof typeof total>) total[key] += s[key];
      lanes[lane.label] = { threads: s.threads, busy: s.busy, ...(lane.heapLimitMb !== undefined ? { heapLimitMb: lane.heapLimitMb } : {}) };
    }
    const c = this.#counters;
    return {
      threads: total.threads,
      busy: total.busy,
      idle: total.idle,
      // Executions waiting for a thread to finish starting (the admission queue is `queued`).
      startingWait: total.queued,
      // Executions handed to a thread behind its running one (they begin there next).
      staged: total.staged,
      // Executions admitted but waiting for a running one to end (no thread could take them yet).
      held: total.held,
      minThreads: this.#settings.minThreads,
      maxThreads: this.#settings.maxThreads,
      started: c.started,
      crashed: c.crashed,
      terminated: c.terminated,
      retired: { ...c.retired },
      stopped: c.stopped,
      redispatched: c.redispatched,
      failedToStart: c.failedToStart,
      lanes,
    };
  }

  protected override runnerProblems(): string[] {
    const c = this.#counters;
    if (c.startFailureStreak > 0) {
      return [`worker threads fail to start (the last ${c.startFailureStreak} did): ${c.lastStartError ?? 'unknown error'}`];
    }
    return [];
  }

  protected isolation(): IsolationReport {
    return {
      requested: 'thread',
      active: 'thread',
      layers: ['worker thread', 'heap limit', 'env allow-list'],
      reason: "a worker thread has its own heap and globals but shares the host process: its files, network, descriptors and signals",
    };
  }

  /** Threads are sized at start: a handler with its own memoryMb gets a lane whose threads have that heap cap. */
  #laneFor(memoryMb: number | undefined): PoolLane {
    const fallback = this.#lanes.get('default')!;
    if (memoryMb === undefined || memoryMb === fallback.heapLimitMb) return fallback;
    let lane = this.#lanes.get(memoryMb);
    if (!lane) {
      lane = this.#createLane(`memoryMb=${memoryMb}`, 0, memoryMb);
      this.#lanes.set(memoryMb, lane);
    }
    return lane;
  }

  #createLane(label: string, minThreads: number, heapMb: number | undefined): PoolLane {
    const s = this.#settings;
    const resourceLimits = heapMb === undefined ? s.resourceLimits : { ...s.resourceLimits, maxOldGenerationSizeMb: heapMb };
    return new PoolLane(
      label,
      {
        entry: WORKER_ENTRY,
        minThreads,
        maxThreads: s.maxThreads,
        idleTimeoutMs: s.idleTimeoutMs,
        resourceLimits,
        env: s.env,
        execArgv: s.execArgv,
        maxExecutionsPerThread: s.maxExecutionsPerThread,
        abortGraceMs: s.abortGraceMs,
        maxOutputPerStream: s.maxOutputPerStream,
        maxLogLineLength: s.maxLogLineLength,
        spinWaitUs: s.spinWaitUs,
      },
      this.#counters,
      this.#gate,
    );
  }
}
