/**
 * Thread side: what the plugins on one thread share without patching any intrinsic, looked at or
 * made fresh when a task of another handler than the last one comes (worker-entry.ts). Captured
 * before any plugin code runs, as the intrinsics are (thread-hygiene.ts).
 */
import { getPriority } from 'node:os';
import { watchCalls } from './call-watch.js';

const ownSymbols = Object.getOwnPropertySymbols;
const getOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor;
const apply = Reflect.apply;
const allocUnsafe = Buffer.allocUnsafe;
const theGlobal = globalThis;
const timeline = performance;
const clearEntries = [timeline.clearMarks, timeline.clearMeasures, timeline.clearResourceTimings].filter((clear) => typeof clear === 'function');

const keyFor = Symbol.keyFor;
/** Core's own registries (workspace-sweep.ts), which it makes on first use. */
const OURS = '@kb-labs/plugin-execution/';

/** The largest pool a roll-over allocates from (a plugin may have raised Buffer.poolSize). */
const MAX_ROLLED_POOL = 1024 * 1024;

/**
 * The global object's own symbol-keyed properties, as they were when the thread started. Node
 * keeps settings of the whole thread there: fetch's dispatcher (`Symbol.for('undici.globalDispatcher.1')`,
 * which undici's `setGlobalDispatcher` sets: a MockAgent or a proxy one plugin installs would
 * answer, or see, every later fetch on the thread, another plugin's requests and credentials
 * included). One added, removed or replaced is a change: the dispatcher a thread's first `fetch()`
 * makes too, since it cannot be told from one a plugin set first.
 */
export function watchGlobalSymbols(): { changed(): boolean } {
  const watched = (): symbol[] => ownSymbols(theGlobal).filter((key) => !keyFor(key)?.startsWith(OURS));
  const baseline = new Map(watched().map((key) => [key, getOwnPropertyDescriptor(theGlobal, key)]));
  return {
    changed(): boolean {
      const now = watched();
      if (now.length !== baseline.size) return true;
      for (let i = 0; i < now.length; i++) {
        const before = baseline.get(now[i]!);
        const after = getOwnPropertyDescriptor(theGlobal, now[i]!);
        if (!before || !after || after.value !== before.value || after.get !== before.get || after.set !== before.set) return true;
      }
      return false;
    },
  };
}

/**
 * Before another handler's first execution on the thread: small `Buffer.allocUnsafe` and
 * `Buffer.from` buffers come from a pool shared by the thread, so a handler that kept one could
 * read, through its `.buffer`, what the next handler put in its own (a password turned into a
 * Buffer): a new pool is started, which the earlier handler holds nothing of. The performance
 * timeline (marks, measures, resource timings: `performance.getEntries()`) is cleared too.
 */
export function forgetSharedState(): void {
  const pooled = (Buffer.poolSize >>> 1) - 1;
  if (pooled > 0) {
    const old = allocUnsafe(1).buffer;
    // At most three allocations of just under half a pool reach a new one: each takes half, or starts one.
    if (pooled <= MAX_ROLLED_POOL / 2) for (let i = 0; i < 3 && allocUnsafe(pooled).buffer === old; i++);
    // Node sizes a pool by Buffer.poolSize when it makes it, and decides what is pooled by Buffer.poolSize
    // now: a pool made while a handler had raised it (and set it back since) is larger than these
    // allocations reach, and the next handler's Buffers would land in it. The caller retires the thread.
    if (allocUnsafe(1).buffer === old) throw new Error('the Buffer pool could not be renewed');
  }
  for (const clear of clearEntries) apply(clear, timeline, []);
}

/**
 * Settings a handler can write on `process` itself, no intrinsic replaced, that change how later
 * code on the thread runs: `process.throwDeprecation = true` turns the next plugin's first call of
 * a deprecated API (Node's, or a library's `util.deprecate`) into an uncaught exception, a
 * WORKER_CRASHED blamed on it; `noDeprecation` and `traceDeprecation` silence or reshape its
 * warnings. Compared as properties (value or accessors, or absent) with the thread's start.
 */
const PROCESS_SETTINGS = ['throwDeprecation', 'noDeprecation', 'traceDeprecation', 'traceProcessWarnings'] as const;

export function watchProcessSettings(): { changed(): boolean } {
  const processObject = process;
  const baseline = PROCESS_SETTINGS.map((key) => getOwnPropertyDescriptor(processObject, key));
  return {
    changed(): boolean {
      for (let i = 0; i < PROCESS_SETTINGS.length; i++) {
        const before = baseline[i];
        const after = getOwnPropertyDescriptor(processObject, PROCESS_SETTINGS[i]!);
        if (before?.value !== after?.value || before?.get !== after?.get || before?.set !== after?.set || !before !== !after) return true;
      }
      return false;
    },
  };
}

/**
 * The thread's CPU priority (its nice value): on Linux each thread has its own, which
 * `os.setPriority(n)` (pid 0) sets for the calling thread, and every later execution on it would
 * run at what a plugin left there (a CPU-heavy job lowering its own, as it would in a process of
 * its own). Raising it back takes a privilege (CAP_SYS_NICE) a host seldom has, so a change counts.
 */
export function watchThreadPriority(): { changed(): boolean } {
  const priorityNow = (): number | undefined => {
    try {
      return getPriority();
    } catch {
      return undefined;
    }
  };
  const baseline = priorityNow();
  return { changed: () => priorityNow() !== baseline };
}

/**
 * The thread's environment data (`worker_threads.setEnvironmentData`): what `getEnvironmentData`
 * answers to every later caller on the thread, another plugin's included (a config object, an
 * endpoint), and what every Worker started from the thread is given. Node can neither list nor
 * reset it, so a thread counts as changed once a handler set any: the setter is wrapped here,
 * before any plugin code runs (and Node's ES module view of `node:worker_threads` brought in
 * line), and the wrapper replaced or removed counts too.
 */
export function watchEnvironmentData(): { changed(): boolean } {
  const changed = watchCalls(process.getBuiltinModule('node:worker_threads') as unknown as Record<string, unknown>, ['setEnvironmentData']);
  (process.getBuiltinModule('node:module') as unknown as { syncBuiltinESMExports(): void }).syncBuiltinESMExports();
  return { changed };
}

/**
 * `v8.promiseHooks`' setters (an object of Node's own, not a module's ES view): wrapped as Node 24
 * has no `async_wrap` binding to read the hooks back from, and these are what a plugin reaches there.
 */
const PROMISE_HOOK_SETTERS = ['onInit', 'onSettled', 'onBefore', 'onAfter', 'createHook'] as const;

/**
 * V8's promise hooks: functions called for every promise the thread makes, resolves or awaits,
 * another plugin's included (its promises, and through them their values). `v8.promiseHooks.onInit`
 * sets them with no async hook made (which LaterWatch sees), and so does the deprecated
 * `process.binding('async_wrap').setPromiseHooks`. Compared with the thread's start through
 * V8's own getter, taken before any plugin code runs; any hook present where there was none counts.
 */
export function watchPromiseHooks(): { changed(): boolean } {
  // process.binding() warns (DEP0111) on first use: not a warning of any plugin's. Defined, not
  // assigned: a host run with --no-deprecation has it read-only (true), and its threads too.
  const quiet = getOwnPropertyDescriptor(process, 'noDeprecation');
  if (quiet?.configurable !== false) Object.defineProperty(process, 'noDeprecation', { value: true, writable: true, enumerable: true, configurable: true });
  let get: (() => unknown[]) | undefined;
  try {
    const asyncWrap = (process as unknown as { binding(name: string): { getPromiseHooks?: () => unknown[] } }).binding('async_wrap');
    if (typeof asyncWrap.getPromiseHooks === 'function') get = asyncWrap.getPromiseHooks.bind(asyncWrap);
  } catch {
    // No binding (a later Node): nothing to compare.
  } finally {
    if (quiet) Object.defineProperty(process, 'noDeprecation', quiet);
    else delete (process as { noDeprecation?: boolean }).noDeprecation;
  }
  const baseline = get?.() ?? [];
  const called = watchCalls(process.getBuiltinModule('node:v8').promiseHooks as unknown as Record<string, unknown>, PROMISE_HOOK_SETTERS);
  return {
    changed(): boolean {
      if (called()) return true;
      if (!get) return false;
      const now = get();
      for (let i = 0; i < 4; i++) if (now[i] !== baseline[i]) return true;
      return false;
    },
  };
}
