import type { BackendHealth, BackendStats, ExecutionResult } from '@kb-labs/plugin-execution-core';

/** What a fuzzed handler does once it began (the fuzz fixture plugin's `input.act`). */
export type FuzzAct = 'ok' | 'throw' | 'hang' | 'hang-signal' | 'sleep' | 'spin' | 'exit' | 'crash' | 'write' | 'log' | 'platform';

/** Acts that end in success when nothing stops them first. */
export const SUCCEEDING_ACTS: ReadonlySet<FuzzAct> = new Set(['ok', 'sleep', 'spin', 'write', 'log', 'platform']);
/** Acts that end their runner (never run in-process: they would end the test). */
export const CRASHING_ACTS: ReadonlySet<FuzzAct> = new Set(['exit', 'crash']);

/** One `execute()` the driver made, with what the model knew when it was called and when it settled. */
export interface ExecuteRecord {
  tag: string;
  pluginId: string;
  act: FuzzAct;
  timeoutMs: number | undefined;
  /** The model's view of the plugin at the call: registered, not registered, or a registerPlugin() of it not settled yet. */
  registeredAtCall: 'yes' | 'no' | 'pending';
  /**
   * A registerPlugin() or unregisterPlugin() of its plugin was called while it was still waiting
   * for the backend's plugins to load at first use: it may run or get HANDLER_NOT_FOUND (docs/plugins.md).
   */
  changedWhileLoading?: true;
  /** performance.now() of the driver's abort of this execution's signal, if it aborted it. */
  abortedAt?: number;
  /** Its signal was aborted before execute() was called: it must never run. */
  abortedBeforeCall?: true;
  settledAt?: number;
  settleCount: number;
  /** performance.now() of each onStart, onLog and onEvent call the execution got. */
  starts: number[];
  logs: number[];
  events: number[];
  result?: ExecutionResult;
  /** A rejection of execute() (it must never reject). */
  rejection?: unknown;
}

/** What a fuzz run saw, for the invariant checks and for the replay message. */
export interface FuzzRun {
  seed: number;
  /** The operations made, in order, one short line each (printed when an invariant fails). */
  log: string[];
  executions: ExecuteRecord[];
  /** marks.hit(tag) calls the host received: how many handler bodies began per execution. */
  hits: Map<string, number>;
  shutdownCalledAt?: number;
  /** Executions that had not settled when shutdown() resolved. */
  unsettledAtShutdown?: string[];
  /** A second shutdown() returned another promise than the first. */
  secondShutdownDiffered?: true;
  /** Set once something proved the backend's plugins loaded (an execution that ran, health()). */
  pluginsLoaded: boolean;
  /** Executions called before the plugins were known to have loaded, not settled yet. */
  loadingWaiters: Set<ExecuteRecord>;
  /** Snapshots taken while the run went on, checked for coherence afterwards. */
  snapshots: Array<{ stats?: BackendStats; health?: BackendHealth; error?: unknown }>;
  /** Rejections of registerPlugin / unregisterPlugin / reloadPlugin, with what was called. */
  changeErrors: Array<{ op: string; error: unknown }>;
  /** stats() once the backend was shut down and every execution had settled. */
  finalStats?: BackendStats;
  finalHealth?: BackendHealth;
}

/** The error codes docs/errors.md documents. */
export const DOCUMENTED_CODES: ReadonlySet<string> = new Set([
  'VALIDATION_ERROR',
  'PERMISSION_DENIED',
  'HANDLER_ERROR',
  'HANDLER_NOT_FOUND',
  'TIMEOUT',
  'ABORTED',
  'WORKER_CRASHED',
  'SHUTTING_DOWN',
  'QUEUE_FULL',
  'WORKSPACE_ERROR',
  'BACKEND_NOT_INSTALLED',
  'INTERNAL_ERROR',
]);
