import os from 'node:os';
import type { ResourceLimits } from 'node:worker_threads';
import { type BackendOptions, type ValidationIssue } from '@kb-labs/plugin-execution-core';
import { backendOptionsSchema, lazySchema, option, outputLimits, validationError } from '@kb-labs/plugin-execution-core/backend-kit';

/** Options of the worker-pool backend: the common ones plus the pool's own (docs/backends/worker-pool.md). */
export interface WorkerPoolBackendOptions extends BackendOptions {
  /** Threads at most, and so executions at once (`maxConcurrency` may lower that). @default `maxConcurrency` if set, else `os.availableParallelism()` */
  maxThreads?: number | undefined;
  /** Threads started with the backend and kept when idle. @default 1 */
  minThreads?: number | undefined;
  /** How long a thread beyond `minThreads` may stay idle, in ms. @default 30000 */
  idleTimeoutMs?: number | undefined;
  /** V8 limits of every thread; `maxOldGenerationSizeMb` is the heap cap (a handler's manifest `memoryMb` replaces it for that handler). @default Node's */
  resourceLimits?: ResourceLimits | undefined;
  /** Replace a thread after this many executions (0 = never): bounds what slow leaks in plugin code pile up. @default 0 */
  maxExecutionsPerThread?: number | undefined;
  /**
   * After the caller aborts a running execution, how long its handler has to honour `ctx.signal`
   * before the thread is terminated, in ms (a timeout or a shutdown terminates it at once). The
   * same option and rule as on the subprocess backend. Was `abortGraceMs`. @default 500
   */
  cancelGraceMs?: number | undefined;
  /** The threads' starting environment (each thread has its own copy; a handler sees only what its manifest declares). @default a copy of `process.env` */
  env?: Record<string, string | undefined> | undefined;
  /** Node flags for the threads (loaders such as `--import tsx`). @default `process.execArgv` */
  execArgv?: string[] | undefined;
  /** Characters of stdout, and of stderr, delivered to `onLog` per execution; the rest is dropped, with one notice. @default 1000000 */
  maxOutputPerStream?: number | undefined;
  /** Longest stdout/stderr line delivered to `onLog`; longer ones are cut. @default 16384 */
  maxLogLineLength?: number | undefined;
}

const MIN_STACK_MB = 1;
const MAX_STACK_MB = 1024;
/** The least heap cap a thread starts with; the manifest's `memoryMb` has the same minimum. */
const MIN_HEAP_MB = 8;
/** A code range of gigabytes is never what was meant (V8 sizes its own, some 128 MB, when none is given). */
const MAX_CODE_RANGE_MB = 1024;

/** The options with their defaults, checked against each other. */
export type ResolvedPoolOptions = ReturnType<typeof resolvePoolOptions>;

/** The whole option schema of this backend: the base class validates with it, unknown options refused. */
export const workerPoolOptionsSchema = lazySchema((z) => {
  const megabytes = z.number({ error: 'must be a positive number of MB' }).positive({ error: 'must be a positive number of MB' }).optional();
  // Below about 0.25 MB a thread overflows its stack while Node starts it, and that takes the
  // whole process down (not the thread alone); a stack of gigabytes is never what was meant.
  const stackRange = `must be a number of MB from ${MIN_STACK_MB} to ${MAX_STACK_MB} (Node's default is 4; a thread cannot even start on much less than 1)`;
  const stackMegabytes = z.number({ error: stackRange }).min(MIN_STACK_MB, { error: stackRange }).max(MAX_STACK_MB, { error: stackRange }).optional();
  // Below about 6 MB a thread runs out of heap while Node starts it, every time: refused here with
  // the manifest's own minimum for `memoryMb` (and subprocess's for defaultMemoryMb).
  const heapRange = `must be a number of MB from ${MIN_HEAP_MB} (a thread cannot even start on much less)`;
  const heapMegabytes = z.number({ error: heapRange }).min(MIN_HEAP_MB, { error: heapRange }).optional();
  // V8 reserves the code range when a thread starts: one past the address space (a petabyte, say)
  // is a fatal OOM of the whole process, not an error of the thread.
  const codeRange = `must be a number of MB above 0, up to ${MAX_CODE_RANGE_MB}`;
  const codeRangeMegabytes = z.number({ error: codeRange }).positive({ error: codeRange }).max(MAX_CODE_RANGE_MB, { error: codeRange }).optional();
  return backendOptionsSchema().extend({
    maxThreads: option.int(1, 1024).optional(),
    minThreads: option.int(0, 1024).optional(),
    idleTimeoutMs: option.int(0).optional(),
    resourceLimits: z
      .object(
        { maxOldGenerationSizeMb: heapMegabytes, maxYoungGenerationSizeMb: megabytes, codeRangeSizeMb: codeRangeMegabytes, stackSizeMb: stackMegabytes },
        { error: 'must be an object of limits in MB' },
      )
      .strict()
      .optional(),
    maxExecutionsPerThread: option.int(0, Number.MAX_SAFE_INTEGER).optional(),
    cancelGraceMs: option.int(0).optional(),
    env: z.record(z.string(), z.string({ error: 'must be a string' }).optional(), { error: 'must be an object of strings' }).optional(),
    execArgv: z.array(z.string(), { error: 'must be an array of strings' }).optional(),
    ...outputLimits.schema(),
    // Removed with the pool of its own: a named refusal says what to do, where "unknown option" would not.
    abortGraceMs: z.never({ error: 'was renamed: use cancelGraceMs (the same option and rule on every backend)' }).optional(),
    spinWaitUs: z.never({ error: 'was removed: idle threads no longer busy-wait for their next execution; drop this option' }).optional(),
  });
});

/** The thread count (and so the concurrency) before validation: BaseBackend validates, and needs it first. */
export function defaultMaxThreads(options: WorkerPoolBackendOptions | undefined): number {
  const count = (value: unknown) => (typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined);
  return count(options?.maxThreads) ?? count(options?.maxConcurrency) ?? Math.max(1, os.availableParallelism());
}

/** Defaults filled in and the options checked against each other; `o` has passed workerPoolOptionsSchema(). */
export function resolvePoolOptions(o: WorkerPoolBackendOptions) {
  const maxThreads = defaultMaxThreads(o);
  const minThreads = o.minThreads ?? Math.min(1, maxThreads);
  const issues: ValidationIssue[] = [];
  if (minThreads > maxThreads) issues.push({ path: 'minThreads', message: `must not exceed maxThreads (${maxThreads}), got ${minThreads}` });
  if (o.maxConcurrency !== undefined && o.maxConcurrency > maxThreads) {
    issues.push({ path: 'maxConcurrency', message: `must not exceed maxThreads (${maxThreads}): each running execution needs a thread of its own, got ${o.maxConcurrency}` });
  }
  if (issues.length) throw validationError('Invalid worker-pool backend options', issues, { phase: 'options' });
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(o.env ?? process.env)) if (value !== undefined) env[key] = value;
  return {
    maxThreads,
    minThreads,
    idleTimeoutMs: o.idleTimeoutMs ?? 30_000,
    resourceLimits: o.resourceLimits ? { ...o.resourceLimits } : (undefined as ResourceLimits | undefined),
    maxExecutionsPerThread: o.maxExecutionsPerThread ?? 0,
    cancelGraceMs: o.cancelGraceMs ?? 500,
    env,
    execArgv: o.execArgv ? [...o.execArgv] : (undefined as string[] | undefined),
    ...outputLimits.resolve(o),
  };
}
