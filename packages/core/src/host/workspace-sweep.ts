import path from 'node:path';
import { WorkspaceError } from '../errors.js';
import { removeTree } from './remove-tree.js';
// Node's built-ins by getBuiltinModule (see workspace-manager.ts).
const fs = process.getBuiltinModule('node:fs');
const os = process.getBuiltinModule('node:os');

export interface SweepResult {
  /** Directories removed because the process that created them is gone. */
  removed: string[];
  /** Directories that could not be removed, with why. */
  failed: Array<{ dir: string; error: string }>;
  /**
   * Directories kept because a host on another machine or in another PID namespace (another
   * container sharing the root) made them: whether it still runs cannot be seen from here.
   */
  foreign: string[];
  /** Directories an execution kept for its host (`keepWorkspace: true`): the host's to remove. */
  kept: string[];
}

/**
 * `kbx-<pid>.<host>[.t<thread>][.s<start>]-<executionId>-<random>`: the pid tells a stale directory
 * from a live one, `<host>` (hostTag) whose pids those are, `<thread>` which worker thread of that
 * process made it (none: the main thread), whose leases only it knows, and `<start>` when that
 * process started (Linux: clock ticks since boot), so that a process that took the pid since is not
 * taken for it. Directories of older versions have no `.<host>`, or no `.s<start>`.
 */
const DIR_PATTERN = /^kbx-(\d+)(?:\.([0-9a-f]{8}))?(?:\.t(\d+))?(?:\.s(\d+))?-/;
/**
 * How every lease's name ends, in every version: `-`, 2 hex characters, and the 6 letters and
 * digits mkdtemp adds. A name that only begins as one does (`kbx-2024-notes`, in a root given
 * in a folder of the user's own) is no workspace, and no sweep's to remove.
 */
const LEASE_END = /-[0-9a-f]{2}[A-Za-z0-9]{6}$/;

/** The name's part after `kbx-` up to the execution id, for a directory made by this thread now. */
export function ownerTag(): string {
  const { threadId } = process.getBuiltinModule('node:worker_threads');
  ownStart ??= startTicksOf(process.pid) ?? null;
  return `${process.pid}.${hostTag()}${threadId ? `.t${threadId}` : ''}${ownStart === null ? '' : `.s${ownStart}`}`;
}

/** This process's start (startTicksOf), once read; null where it cannot be read. */
let ownStart: number | null | undefined;

/**
 * When `pid` started, in clock ticks since boot (/proc/<pid>/stat, field 22) as the machine counts
 * them; undefined without /proc or once it is gone. The kernel adds the reader's time namespace's
 * boot-time offset to what it shows there (`unshare --time`): taken off again, so that a host in
 * another time namespace, and a sweep outside it, name and read the same start.
 */
function startTicksOf(pid: number): number | undefined {
  try {
    // The fields after the command's closing parenthesis (the last one): state is the first, start time the twentieth.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) - (bootOffset ??= bootOffsetTicks());
    return Number.isSafeInteger(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

/** This process's time namespace's boot-time offset in clock ticks (USER_HZ, 100), once read. */
let bootOffset: number | undefined;

/** The `boottime` line of /proc/self/timens_offsets (Linux 5.6 on), in clock ticks; 0 where there is none. */
function bootOffsetTicks(): number {
  try {
    const line = /^boottime\s+(-?\d+)\s+(\d+)/m.exec(fs.readFileSync('/proc/self/timens_offsets', 'latin1'));
    return line ? Number(line[1]) * 100 + Math.floor(Number(line[2]) / 10_000_000) : 0;
  } catch {
    return 0;
  }
}

/** Whether the process that made a directory named for `pid` (started at `start`, if the name says) still runs. */
function creatorAlive(pid: number, start: string | undefined): boolean {
  if (!processAlive(pid)) return false;
  const now = start === undefined ? undefined : startTicksOf(pid);
  // Another process that took the pid since started later: the one that made it is gone.
  return now === undefined || now === Number(start);
}

/**
 * The file beside a kept workspace, `<dir>.kept`. No directory's name ends so: mkdtemp ends it
 * with six letters and digits.
 */
export const KEPT_SUFFIX = '.kept';

/**
 * Live directories of every manager in this thread (shared through a global symbol so that an
 * ESM and a CJS copy of core agree), so a sweep never removes a lease that is in use.
 */
export const LIVE: Set<string> = ((globalThis as Record<symbol, unknown>)[Symbol.for('@kb-labs/plugin-execution/live-workspaces')] ??=
  new Set<string>()) as Set<string>;
/**
 * The paths given to `mkdtemp` whose directories may exist already but are not in LIVE yet (it
 * has not resolved): a sweep that reads the root meanwhile must not take them for stale.
 */
export const CREATING: Set<string> = ((globalThis as Record<symbol, unknown>)[Symbol.for('@kb-labs/plugin-execution/creating-workspaces')] ??=
  new Set<string>()) as Set<string>;
/** The characters mkdtemp adds to the path it is given. */
const MKDTEMP_SUFFIX = 6;

/** WorkspaceManager.sweep() on `root` (its options checked there). */
export async function sweepRoot(root: string, foreignOlderThanMs: number | undefined): Promise<SweepResult> {
  const result: SweepResult = { removed: [], failed: [], foreign: [], kept: [] };
  const foreignCutoff = foreignOlderThanMs === undefined ? undefined : Date.now() - foreignOlderThanMs;
  let names: string[];
  try {
    // In name order: what it lists comes out the same on every file system.
    names = (await fs.promises.readdir(root)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return result;
    throw new WorkspaceError(`Cannot read workspace root ${root}: ${(error as Error).message}`, { details: { root, code: (error as NodeJS.ErrnoException).code }, cause: error });
  }
  const present = new Set(names);
  for (const name of names) {
    const match = DIR_PATTERN.exec(name);
    if (!match || !LEASE_END.test(name.endsWith(KEPT_SUFFIX) ? name.slice(0, -KEPT_SUFFIX.length) : name)) continue;
    const dir = path.join(root, name);
    if (name.endsWith(KEPT_SUFFIX)) {
      // The host removed the workspace it kept: its mark goes too.
      if (!present.has(name.slice(0, -KEPT_SUFFIX.length)) && !fs.existsSync(dir.slice(0, -KEPT_SUFFIX.length))) await removeQuietly(dir);
      continue;
    }
    // Kept, or being kept now (the mark is written before the lease leaves LIVE).
    if (present.has(name + KEPT_SUFFIX) || fs.existsSync(dir + KEPT_SUFFIX)) {
      result.kept.push(dir);
      continue;
    }
    const foreign = match[2] !== undefined && match[2] !== hostTag();
    if (foreign && !(foreignCutoff !== undefined && (await modifiedBefore(dir, foreignCutoff)))) {
      result.foreign.push(dir);
      continue;
    }
    const pid = Number(match[1]);
    const alive = !foreign && creatorAlive(pid, match[4]);
    const stale = foreign || (pid === process.pid && alive ? ownUnleased(dir, Number(match[3] ?? 0)) : !alive);
    if (!stale) continue;
    try {
      // Gone since the root was read (its lease released it): not this sweep's doing.
      if (!(await stillThere(dir))) continue;
      await removeTree(dir);
      result.removed.push(dir);
    } catch (error) {
      result.failed.push({ dir, error: (error as Error).message });
    }
  }
  return result;
}

async function stillThere(dir: string): Promise<boolean> {
  try {
    await fs.promises.lstat(dir);
    return true;
  } catch {
    return false;
  }
}

async function removeQuietly(file: string): Promise<void> {
  try {
    await fs.promises.unlink(file);
  } catch {
    // Gone already, or not ours to remove: the next sweep tries again.
  }
}

/** Whether `dir` (not followed if a link) was last modified before `time` (epoch ms); false if it cannot be read. */
async function modifiedBefore(dir: string, time: number): Promise<boolean> {
  try {
    return (await fs.promises.lstat(dir)).mtimeMs < time;
  } catch {
    return false;
  }
}

let tag: string | undefined;

/**
 * Whose pids a directory's name holds: 8 hex characters of a hash of the host name and, on Linux,
 * the machine's id (/etc/machine-id: machines made from one image share a host name, and the
 * first PID namespace's id is the same on every machine) and the PID namespace (two containers on
 * one machine share neither pids nor, by default, a name).
 */
export function hostTag(): string {
  tag ??= process.getBuiltinModule('node:crypto').createHash('sha256').update(`${os.hostname()}\n${firstLineOf('/proc/self/ns/pid', true)}${machineId()}`).digest('hex').slice(0, 8);
  return tag;
}

/** The machine's id, as `\n<id>`; empty where there is none (not Linux, a container that has none: its PID namespace tells it apart). */
function machineId(): string {
  const id = firstLineOf('/etc/machine-id') || firstLineOf('/var/lib/dbus/machine-id');
  return id ? `\n${id}` : '';
}

/** A file's first line (or a link's target); empty when it cannot be read. */
function firstLineOf(file: string, link = false): string {
  try {
    return link ? fs.readlinkSync(file) : fs.readFileSync(file, 'utf8').split('\n', 1)[0]!.trim();
  } catch {
    return '';
  }
}

/**
 * A directory of this process that no lease holds. Only the thread that made it knows its leases
 * (each worker thread has a global scope, and LIVE, of its own): another thread's is kept while
 * the process lives, and swept once it is gone.
 */
function ownUnleased(dir: string, thread: number): boolean {
  if (thread !== process.getBuiltinModule('node:worker_threads').threadId) return false;
  // By name, not by path: a manager given the root by another path (a symbolic link to it) leases
  // the same directories under other paths. Names are this thread's own, unique under any root.
  const name = path.basename(dir);
  const making = name.slice(0, -MKDTEMP_SUFFIX);
  for (const live of LIVE) if (path.basename(live) === name) return false;
  for (const prefix of CREATING) if (path.basename(prefix) === making) return false;
  return true;
}

function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
