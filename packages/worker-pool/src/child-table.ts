/**
 * The children a thread's handlers started that still run, in a shared table the thread writes
 * and the host reads (a part of the thread's flow buffer, out of plugin code's reach): a thread
 * that cannot collect them itself (ended while what its handler left loops, crashed, terminated
 * mid-execution) has them killed by the host once it is gone, so that none outlives its thread.
 * Each entry is a pid and the low 32 bits of its start time, as /proc gives it, so that the host
 * never kills another process that took the pid since; the pid is read as spawn() returns, and
 * listed only if that process is a child of this one started then. Linux only (/proc); the first
 * CHILD_SLOTS running at once.
 */
import { FLOW_SLOTS, add, load, notify, store, waitAsync } from './flow-control.js';
import { SPAWN_WAIT_MS } from './thread-deadlines.js';
// From the runner's entry: a thread that loads this table must not load the backend kit (15–25 ms of CPU a thread).
import { clearTimeout, monotonicNow, setTimeout } from '@kb-labs/plugin-execution-core/runner';

// The thread's side runs after plugin code, which may replace any global or prototype method:
// each it uses is taken at load, so that none is handed the shared buffer or can forge a child.
// (Atomics: flow-control.ts's, taken there at load.)
const readFileSync = process.getBuiltinModule('node:fs').readFileSync;
const { isSafeInteger, parseFloat } = Number;
const { floor } = Math;
const toNumber = Number;
const apply = Reflect.apply;
const exec = RegExp.prototype.exec;
/** The thread's process (the host): `process.pid` is plugin code's to redefine on a thread. */
const hostPid = process.pid;
/** /proc/<pid>/stat after the command's closing parenthesis (the last one): state, ppid, 17 fields, start time. */
const STAT_FIELDS = /^.*\) \S+ (\d+)(?: \S+){17} (\d+) /s;

/** Children tracked at once per thread. */
const CHILD_SLOTS = 64;
/** The slot counting the spawn() calls under way on the thread (a spawn may start another, from a diagnostics_channel subscriber). */
const SPAWNING = FLOW_SLOTS;
/**
 * Set in the SPAWNING slot by the host once it is to end the thread: a spawn() that begins after it
 * (it counts itself first, then looks) refuses to start its child, and one counted before it is
 * waited for. Without it, a spawn begun between the host's look and the termination taking effect
 * could start a child and be ended before listing it.
 */
const ENDING = 1 << 30;
/** The int32 slots of a thread's whole shared buffer: the flow slots, the spawn count, then the table (2 each: pid, start time). */
export const SHARED_SLOTS = FLOW_SLOTS + 1 + 2 * CHILD_SLOTS;

/** The table in a thread's shared buffer, after its flow slots. */
export class ChildTable {
  readonly base = SPAWNING + 1;

  constructor(readonly shared: Int32Array) {}

  /**
   * Thread side: run a spawn() (and list its child, `add`) counted as under way, so that the host
   * does not terminate the thread in between: its child would start and never be listed.
   */
  spawning<T>(spawn: () => T): T {
    const before = add(this.shared, SPAWNING, 1);
    try {
      if (before & ENDING) throw new Error('The worker thread is being ended (its execution was stopped, or it is retired): no process is started from it now');
      return spawn();
    } finally {
      add(this.shared, SPAWNING, -1);
      notify(this.shared, SPAWNING);
    }
  }

  /** Thread side, as it retires: no spawn() starts a child from now on (one started while it collects the others would be left a zombie). */
  refuseSpawns(): void {
    Atomics.or(this.shared, SPAWNING, ENDING);
  }

  /** Host side: call `then` (which terminates the thread) once no spawn() is under way on it, at `until` (monotonicNow()) at the latest. */
  whenNotSpawning(then: () => void, until = monotonicNow() + SPAWN_WAIT_MS): void {
    const spawning = Atomics.or(this.shared, SPAWNING, ENDING) | ENDING;
    const left = until - monotonicNow();
    if (spawning === ENDING || left <= 0) return then();
    const waited = waitAsync(this.shared, SPAWNING, spawning, left);
    if (!waited.async) return this.whenNotSpawning(then, until);
    // Ref'd while it waits (Atomics.waitAsync is not): the host stays up for what waits behind the thread.
    const keepAlive = setTimeout(() => undefined, left + 10);
    void waited.value.then(() => {
      clearTimeout(keepAlive);
      this.whenNotSpawning(then, until);
    });
  }

  /**
   * Thread side, as spawn() returns: `pid` was started here, after `notBefore` (startTicks() taken
   * before the spawn). A pid that is no child of this process, or one started before (a pid put on
   * a ChildProcess by plugin code, naming a child of the host's own), is not listed; nor one past a
   * full table (left to the thread's own reaper).
   */
  add(pid: unknown, notBefore: number | undefined): void {
    if (typeof pid !== 'number' || !isSafeInteger(pid) || pid <= 0 || notBefore === undefined) return;
    const start = startTimeOf(pid, hostPid);
    if (start === undefined || start < notBefore) return;
    const at = this.#freeSlot() ?? (this.#forgetGone(), this.#freeSlot());
    if (at === undefined) return;
    store(this.shared, at + 1, start | 0);
    store(this.shared, at, pid);
  }

  #freeSlot(): number | undefined {
    for (let i = 0; i < CHILD_SLOTS; i++) if (load(this.shared, this.base + 2 * i) === 0) return this.base + 2 * i;
    return undefined;
  }

  /**
   * Free the slots of children that are gone (collected: no longer the host's child started then).
   * A child leaves its slot at its 'exit' (remove), which plugin code can keep the runtime from
   * hearing (its listeners taken off before it is killed): its slot would be held for good, and
   * once all were, no child started after would be listed. Only when the table is full.
   */
  #forgetGone(): void {
    for (let i = 0; i < CHILD_SLOTS; i++) {
      const at = this.base + 2 * i;
      const pid = load(this.shared, at);
      const start = startTimeOf(pid, hostPid);
      if (start === undefined || (start | 0) !== load(this.shared, at + 1)) store(this.shared, at, 0);
    }
  }

  /** Thread side: `pid` has exited (or was collected). */
  remove(pid: unknown): void {
    if (typeof pid !== 'number' || pid <= 0) return;
    for (let i = 0; i < CHILD_SLOTS; i++) if (load(this.shared, this.base + 2 * i) === pid) store(this.shared, this.base + 2 * i, 0);
  }

  /**
   * Host side, as the host process exits with the thread still there (process.exit(), an uncaught
   * exception): no spawn() may begin from now on, one under way is waited for (SPAWN_WAIT_MS at
   * most: the exit cannot wait for a promise), and each child listed is killed.
   */
  killAtHostExit(): void {
    const until = monotonicNow() + SPAWN_WAIT_MS;
    for (let spawning = Atomics.or(this.shared, SPAWNING, ENDING) | ENDING; spawning !== ENDING; spawning = load(this.shared, SPAWNING)) {
      const left = until - monotonicNow();
      if (left <= 0) break;
      Atomics.wait(this.shared, SPAWNING, spawning, left);
    }
    this.killLeft();
  }

  /** Host side: whether a child is listed, one the thread has not seen exit. */
  listsAny(): boolean {
    for (let i = 0; i < CHILD_SLOTS; i++) if (load(this.shared, this.base + 2 * i) !== 0) return true;
    return false;
  }

  /** Host side, once the thread is gone: SIGKILL each child still listed that is still the host's and the same process. */
  killLeft(): number {
    liveTables.delete(this);
    let killed = 0;
    for (let i = 0; i < CHILD_SLOTS; i++) {
      const pid = load(this.shared, this.base + 2 * i);
      const start = pid > 0 ? startTimeOf(pid, hostPid) : undefined;
      if (start === undefined || (start | 0) !== load(this.shared, this.base + 2 * i + 1)) continue;
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // Gone meanwhile.
      }
    }
    return killed;
  }
}

/** The tables of the threads still there, whose children go when the host process exits. */
const liveTables = new Set<ChildTable>();
let exitHooked = false;

/**
 * Host side: kill the children listed in `table` if the host process exits while its thread is
 * there (a host that ends by process.exit() or an uncaught exception without shutdown(): its
 * threads end with it, and their children would run on), until the thread is gone (`killLeft()`).
 * One 'exit' listener per process. Not a host killed by a signal, which runs no listener. Returns `table`.
 */
export function killChildrenAtExit(table: ChildTable): ChildTable {
  if (!exitHooked) {
    exitHooked = true;
    // A function of the module's: one made here would keep this call's scope for good.
    process.on('exit', killLiveTables);
  }
  liveTables.add(table);
  return table;
}

function killLiveTables(): void {
  for (const table of liveTables) table.killAtHostExit();
}

/** Clock ticks since boot now (as /proc gives a process's start time: USER_HZ, 100 on Linux), less a second for the two clocks' rounding; undefined without /proc. */
export function startTicks(): number | undefined {
  try {
    return floor(parseFloat(readFileSync('/proc/uptime', 'latin1')) * 100) - 100;
  } catch {
    return undefined;
  }
}

/** `pid`'s start time in clock ticks since boot (/proc/<pid>/stat, field 22), if it runs with parent `parent`. */
function startTimeOf(pid: number, parent: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  const fields = apply(exec, STAT_FIELDS, [stat]) as RegExpExecArray | null;
  if (fields === null || toNumber(fields[1]) !== parent) return undefined;
  return toNumber(fields[2]);
}
