import os from 'node:os';
import type { ResourceLimits } from 'node:worker_threads';
import { validationError, type BackendOptions, type ValidationIssue } from '@kb-labs/plugin-execution-core';

/** Options of the worker-pool backend: the common ones plus the pool's own. */
export interface WorkerPoolBackendOptions extends BackendOptions {
  /**
   * Threads at most. Each running execution has a thread to itself, so this is also how many
   * executions run at once (`maxConcurrency` may lower that, never raise it).
   * @default `maxConcurrency` when set, else `os.availableParallelism()`
   */
  maxThreads?: number;
  /**
   * Threads started with the backend and kept even when idle, so the first executions do not
   * wait for a thread to start.
   * @default 1 (never more than maxThreads)
   */
  minThreads?: number;
  /**
   * How long a thread beyond `minThreads` may stay idle before it is stopped, in ms.
   * @default 30000
   */
  idleTimeoutMs?: number;
  /**
   * V8 limits of every thread; `maxOldGenerationSizeMb` is the heap cap. A handler whose
   * manifest sets `memoryMb` runs on threads whose heap cap is that value instead (see
   * docs/backends/worker-pool.md). A thread over its cap dies with WORKER_CRASHED, reason `oom`.
   * @default Node's defaults (heap sized from the machine's memory)
   */
  resourceLimits?: ResourceLimits;
  /**
   * Replace a thread after it has run this many executions (0 = never). Bounds what slow leaks
   * in plugin code (module-level caches, listeners) can pile up.
   * @default 0
   */
  maxExecutionsPerThread?: number;
  /**
   * When the caller aborts a running execution, `ctx.signal` fires in the thread at once; the
   * handler then has this long to finish before its thread is terminated, in ms. (Timeouts and
   * shutdown terminate at once.)
   * @default 500
   */
  abortGraceMs?: number;
  /**
   * The environment the threads start with. Each thread gets its own copy (never SHARE_ENV), and
   * a handler sees only the variables its manifest lists in `permissions.env`.
   * @default a copy of `process.env` taken when the backend is created
   */
  env?: Record<string, string | undefined>;
  /**
   * Node flags for the threads (loaders such as `--import tsx` go here).
   * @default `process.execArgv` (Node's default for worker threads)
   */
  execArgv?: string[];
  /**
   * Characters of stdout, and of stderr, a handler's writes deliver to `onLog` per execution
   * (stream `stdout` / `stderr`); the rest is dropped, with one notice.
   * @default 1000000
   */
  maxOutputPerStream?: number;
  /** Longest stdout/stderr line delivered to `onLog`; longer ones are cut. @default 16384 */
  maxLogLineLength?: number;
  /**
   * After an execution, a thread with nothing else to do busy-waits this long (µs) for the next
   * one before it goes to sleep — only while a core is free for it (the host thread, the running
   * executions and the busy-waiting threads must fit on `os.availableParallelism()` cores), so it
   * never takes CPU from work. Saves waking the thread when executions follow each other closely
   * (one at a time: ~30 µs of ~100 µs per execution on our 2-core machines). 0 turns it off.
   * @default 100
   */
  spinWaitUs?: number;
}

export interface ResolvedPoolOptions {
  maxThreads: number;
  minThreads: number;
  idleTimeoutMs: number;
  resourceLimits: ResourceLimits | undefined;
  maxExecutionsPerThread: number;
  abortGraceMs: number;
  env: Record<string, string>;
  execArgv: string[] | undefined;
  maxOutputPerStream: number;
  maxLogLineLength: number;
  spinWaitUs: number;
}

const RESOURCE_LIMIT_KEYS = ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb'] as const;
const MAX_TIMER_MS = 2_147_483_647;

/** Check and default the pool's own options; a ValidationError lists every problem with its path. */
export function resolvePoolOptions(options: WorkerPoolBackendOptions | undefined): ResolvedPoolOptions {
  const o = (options ?? {}) as Record<string, unknown>;
  const issues: ValidationIssue[] = [];
  const int = (key: string, min: number, max: number): number | undefined => {
    const value = o[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      issues.push({ path: key, message: `must be an integer from ${min} to ${max}, got ${describe(value)}` });
      return undefined;
    }
    return value;
  };

  const maxConcurrency = typeof o.maxConcurrency === 'number' && Number.isInteger(o.maxConcurrency) && o.maxConcurrency > 0 ? o.maxConcurrency : undefined;
  const maxThreads = int('maxThreads', 1, 1024) ?? maxConcurrency ?? Math.max(1, os.availableParallelism());
  const minThreads = int('minThreads', 0, 1024) ?? Math.min(1, maxThreads);
  if (minThreads > maxThreads) issues.push({ path: 'minThreads', message: `must not exceed maxThreads (${maxThreads}), got ${minThreads}` });
  if (maxConcurrency !== undefined && maxConcurrency > maxThreads) {
    issues.push({ path: 'maxConcurrency', message: `must not exceed maxThreads (${maxThreads}): each running execution needs a thread of its own, got ${maxConcurrency}` });
  }
  const idleTimeoutMs = int('idleTimeoutMs', 0, MAX_TIMER_MS) ?? 30_000;
  const maxExecutionsPerThread = int('maxExecutionsPerThread', 0, Number.MAX_SAFE_INTEGER) ?? 0;
  const abortGraceMs = int('abortGraceMs', 0, MAX_TIMER_MS) ?? 500;
  const maxOutputPerStream = int('maxOutputPerStream', 0, 1_000_000_000) ?? 1_000_000;
  const maxLogLineLength = int('maxLogLineLength', 1, 100_000_000) ?? 16_384;
  const spinWaitUs = int('spinWaitUs', 0, 10_000) ?? 100;

  let resourceLimits: ResourceLimits | undefined;
  if (o.resourceLimits !== undefined) {
    const limits = o.resourceLimits as Record<string, unknown> | null;
    if (limits === null || typeof limits !== 'object' || Array.isArray(limits)) {
      issues.push({ path: 'resourceLimits', message: `must be an object, got ${describe(limits)}` });
    } else {
      resourceLimits = {};
      for (const key of Object.keys(limits)) {
        const value = limits[key];
        if (!(RESOURCE_LIMIT_KEYS as readonly string[]).includes(key)) {
          issues.push({ path: `resourceLimits.${key}`, message: `unknown limit (known: ${RESOURCE_LIMIT_KEYS.join(', ')})` });
        } else if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)) {
          issues.push({ path: `resourceLimits.${key}`, message: `must be a positive number of MB, got ${describe(value)}` });
        } else if (value !== undefined) {
          resourceLimits[key as (typeof RESOURCE_LIMIT_KEYS)[number]] = value as number;
        }
      }
    }
  }

  let env: Record<string, string> = {};
  const source = o.env === undefined ? process.env : o.env;
  if (source === null || typeof source !== 'object' || Array.isArray(source)) {
    issues.push({ path: 'env', message: `must be an object of strings, got ${describe(source)}` });
  } else {
    env = {};
    for (const [key, value] of Object.entries(source as Record<string, unknown>)) {
      if (value === undefined) continue;
      if (typeof value !== 'string') issues.push({ path: `env.${key}`, message: `must be a string, got ${describe(value)}` });
      else env[key] = value;
    }
  }

  let execArgv: string[] | undefined;
  if (o.execArgv !== undefined) {
    if (!Array.isArray(o.execArgv) || !o.execArgv.every((a) => typeof a === 'string')) {
      issues.push({ path: 'execArgv', message: 'must be an array of strings' });
    } else execArgv = [...o.execArgv];
  }

  if (issues.length) throw validationError('Invalid worker-pool backend options', issues);
  return { maxThreads, minThreads, idleTimeoutMs, resourceLimits, maxExecutionsPerThread, abortGraceMs, env, execArgv, maxOutputPerStream, maxLogLineLength, spinWaitUs };
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return typeof value;
}
