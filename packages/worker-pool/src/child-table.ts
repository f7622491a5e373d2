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
import { FLOW_SLOTS } from './flow-control.js';

const fs = process.getBuiltinModule('node:fs');

/** Children tracked at once per thread. */
const CHILD_SLOTS = 64;
/** The int32 slots of a thread's whole shared buffer: the flow slots, then the table (2 each: pid, start time). */
export const SHARED_SLOTS = FLOW_SLOTS + 2 * CHILD_SLOTS;

/** The table in a thread's shared buffer, after its flow slots. */
export class ChildTable {
  readonly base = FLOW_SLOTS;

  constructor(readonly shared: Int32Array) {}

  /**
   * Thread side, as spawn() returns: `pid` was started here, after `notBefore` (startTicks() taken
   * before the spawn). A pid that is no child of this process, or one started before (a pid put on
   * a ChildProcess by plugin code, naming a child of the host's own), is not listed; nor one past a
   * full table (left to the thread's own reaper).
   */
  add(pid: unknown, notBefore: number | undefined): void {
    if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0 || notBefore === undefined) return;
    const start = startTimeOf(pid, process.pid);
    if (start === undefined || start < notBefore) return;
    for (let i = 0; i < CHILD_SLOTS; i++) {
      const at = this.base + 2 * i;
      if (Atomics.load(this.shared, at) !== 0) continue;
      Atomics.store(this.shared, at + 1, start | 0);
      Atomics.store(this.shared, at, pid);
      return;
    }
  }

  /** Thread side: `pid` has exited (or was collected). */
  remove(pid: unknown): void {
    if (typeof pid !== 'number' || pid <= 0) return;
    for (let i = 0; i < CHILD_SLOTS; i++) if (Atomics.load(this.shared, this.base + 2 * i) === pid) Atomics.store(this.shared, this.base + 2 * i, 0);
  }

  /** Host side, once the thread is gone: SIGKILL each child still listed that is still the host's and the same process. */
  killLeft(): number {
    let killed = 0;
    for (let i = 0; i < CHILD_SLOTS; i++) {
      const pid = Atomics.load(this.shared, this.base + 2 * i);
      const start = pid > 0 ? startTimeOf(pid, process.pid) : undefined;
      if (start === undefined || (start | 0) !== Atomics.load(this.shared, this.base + 2 * i + 1)) continue;
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

/** Clock ticks since boot now (as /proc gives a process's start time: USER_HZ, 100 on Linux), less a second for the two clocks' rounding; undefined without /proc. */
export function startTicks(): number | undefined {
  try {
    return Math.floor(Number.parseFloat(fs.readFileSync('/proc/uptime', 'latin1')) * 100) - 100;
  } catch {
    return undefined;
  }
}

/** `pid`'s start time in clock ticks since boot (/proc/<pid>/stat, field 22), if it runs with parent `parent`. */
function startTimeOf(pid: number, parent: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // After the command's closing parenthesis: state, ppid, … starttime is the 20th field from there.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (Number(fields[1]) !== parent) return undefined;
  const start = Number(fields[19]);
  return Number.isFinite(start) ? start : undefined;
}
