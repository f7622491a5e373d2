import { type IsolationReport, type RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { BaseBackend, hostPermissionProblem, type DispatchControl, type RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';
import { defaultMaxThreads, resolvePoolOptions, workerPoolOptionsSchema, type WorkerPoolBackendOptions } from './options.js';
import type { WorkerPoolRunnerStats } from './pool-contract.js';
import { ThreadPool } from './thread-pool.js';

// Next to this module in both builds (tsup's shims give the CJS build an import.meta.url). The
// CommonJS build of the entry, on purpose: a thread inherits the host's Node flags, and with
// `--input-type` among them (a host started as `node --input-type=module -e …`, or reading its
// script from stdin) Node refuses an ES module as a thread's main file (ERR_INPUT_TYPE_NOT_ALLOWED),
// not a CommonJS one. (Loading the ES module build from an evaluated one-line script avoids that
// too, but such threads skip `--import` preloads, which execArgv loaders rely on.)
const WORKER_ENTRY = new URL('./worker-entry.cjs', import.meta.url);

/**
 * Runs handlers on a pool of reused worker threads, one execution per thread at a time.
 *
 * What a thread isolates: a busy loop (terminated on timeout), a crash (process.exit, uncaught
 * exception, unhandled rejection, out of memory: WORKER_CRASHED, the thread is replaced), the
 * heap (per-thread cap), globals and the environment (each execution starts from clean ones).
 * What it does not: the file system, the network and other process-wide resources are the
 * host's. See docs/backends/worker-pool.md.
 */
export class WorkerPoolBackend extends BaseBackend {
  readonly #pool: ThreadPool;

  constructor(options: WorkerPoolBackendOptions = {}) {
    super('worker-pool', options, { concurrency: defaultMaxThreads(options), optionsSchema: workerPoolOptionsSchema() });
    try {
      this.#pool = new ThreadPool(resolvePoolOptions(options), WORKER_ENTRY, (pluginId) => this.registry.get(pluginId)?.moduleKey);
    } catch (error) {
      this.constructionFailed();
      throw error;
    }
  }

  protected dispatch(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    return this.#pool.run(task, control);
  }

  /** Threads that ran the plugin's older code are retired (once idle): new executions load the new code on fresh threads. */
  protected override pluginReloaded(plugin: RegisteredPlugin): void {
    this.#pool.retireThreadsOf(plugin.id, plugin.moduleKey, 'plugin-reloaded');
  }

  /** Threads that ran the plugin are retired (once idle): its modules go with them. */
  protected override pluginUnregistered(plugin: RegisteredPlugin): void {
    this.#pool.retireThreadsOf(plugin.id, Infinity, 'plugin-unregistered');
  }

  protected override shutdownBegun(): void {
    this.#pool.drain();
  }

  protected closeRunners(): Promise<void> {
    return this.#pool.close();
  }

  protected override runnerStats(): WorkerPoolRunnerStats {
    return this.#pool.stats();
  }

  protected override runnerProblems(): string[] {
    const refused = hostPermissionProblem('worker');
    return refused ? [refused, ...this.#pool.problems()] : this.#pool.problems();
  }

  protected override unstartedReason(): string {
    return this.#pool.unstartedReason();
  }

  protected isolation(): IsolationReport {
    return {
      requested: 'thread',
      active: 'thread',
      layers: ['worker thread', 'heap limit', 'env allow-list'],
      reason: 'a worker thread has its own heap and globals but shares the host process: its files, network, descriptors and signals',
    };
  }
}
