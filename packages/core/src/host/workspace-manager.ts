import path from 'node:path';
import { WorkspaceError } from '../errors.js';
import { nearest } from './nearest-name.js';
import { anchoredTreesAvailable, listAnchored, visitTree, type EntryKind } from './anchored-tree.js';
import { removeTree } from './remove-tree.js';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
// node:fs/promises on first use (`fs.promises`): Node loads it on demand, ~5 ms, and importing core should not.
const fs = process.getBuiltinModule('node:fs');
const os = process.getBuiltinModule('node:os');

export interface WorkspaceManagerOptions {
  /** Folder under which execution directories are created (made 0700 if missing). */
  root: string;
}

export interface WorkspaceLease extends AsyncDisposable {
  readonly executionId: string;
  /** Absolute path of this execution's private directory (mode 0700). */
  readonly dir: string;
  readonly released: boolean;
  /** Remove the directory and everything in it. Idempotent; never follows symlinks out of it. */
  release(): Promise<void>;
}

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
}

/** Longest execution id accepted for a workspace directory name. */
export const MAX_EXECUTION_ID_LENGTH = 128;
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/**
 * `kbx-<pid>.<host>-<executionId>-<random>`: the pid tells a stale directory from a live one, and
 * `<host>` (hostTag) whose pids those are. Directories of older versions have no `.<host>`.
 */
const DIR_PATTERN = /^kbx-(\d+)(?:\.([0-9a-f]{8}))?-/;

/** Why an id may not name a directory, or undefined when it is safe. */
export function unsafeExecutionIdReason(id: unknown): string | undefined {
  if (typeof id !== 'string') return `must be a string, got ${id === null ? 'null' : typeof id}`;
  if (id.length === 0) return 'must not be empty';
  if (id.length > MAX_EXECUTION_ID_LENGTH) return `must be at most ${MAX_EXECUTION_ID_LENGTH} characters, got ${id.length}`;
  if (id.includes('\0')) return 'must not contain NUL';
  if (id.includes('/') || id.includes('\\')) return 'must not contain path separators';
  if (id.includes('..')) return 'must not contain ".."';
  if (path.isAbsolute(id)) return 'must not be an absolute path';
  if (!SAFE_ID.test(id)) return 'may only use letters, digits, ".", "_" and "-", starting with a letter or digit';
  return undefined;
}

/**
 * Live directories of every manager in this process (shared through a global symbol so that an
 * ESM and a CJS copy of this module agree), so `sweep()` never removes a lease that is in use.
 */
const LIVE: Set<string> = ((globalThis as Record<symbol, unknown>)[Symbol.for('@kb-labs/plugin-execution/live-workspaces')] ??=
  new Set<string>()) as Set<string>;
/**
 * The paths given to `mkdtemp` whose directories may exist already but are not in LIVE yet (it
 * has not resolved): a sweep that reads the root meanwhile must not take them for stale.
 */
const CREATING: Set<string> = ((globalThis as Record<symbol, unknown>)[Symbol.for('@kb-labs/plugin-execution/creating-workspaces')] ??=
  new Set<string>()) as Set<string>;
/** The characters mkdtemp adds to the path it is given. */
const MKDTEMP_SUFFIX = 6;

/**
 * One private directory per execution under `root`.
 * Directory names carry the creating process id, which is how `sweep()` tells stale ones apart.
 */
export class WorkspaceManager {
  readonly root: string;
  #rootReady: Promise<void> | undefined;
  /** Leases whose directory could not be removed: how many, and the last one's error. */
  readonly #leftBehind = { count: 0, last: '' };

  constructor(options: WorkspaceManagerOptions) {
    refuseUnknownKeys(options, ['root'], 'WorkspaceManager');
    if (!options || typeof options.root !== 'string' || options.root.length === 0 || options.root.includes('\0')) {
      throw new WorkspaceError('WorkspaceManager needs { root: <non-empty path> }', { details: { field: 'root' } });
    }
    this.root = path.resolve(options.root);
  }

  /** The lease directories of every manager in this process not released yet: what this process leaves behind if it ends now. */
  static liveLeases(): string[] {
    return [...LIVE];
  }

  /** A manager rooted in the OS temp directory (one folder per OS user). */
  static default(): WorkspaceManager {
    const uid = typeof process.getuid === 'function' ? process.getuid() : 'user';
    return new WorkspaceManager({ root: path.join(os.tmpdir(), `kb-plugin-workspaces-${uid}`) });
  }

  #ensureRoot(): Promise<void> {
    this.#rootReady ??= makeDirectories(this.root, 0o700)
      .then(() => this.#checkRoot())
      .catch((error: unknown) => {
        this.#rootReady = undefined;
        throw new WorkspaceError(`Cannot create workspace root ${this.root}: ${(error as Error).message}`, {
          details: { root: this.root, code: (error as NodeJS.ErrnoException).code },
          cause: error,
        });
      });
    return this.#rootReady;
  }

  /**
   * A root in a shared place (the default lives in the OS temp dir) could have been created by
   * another local user, or be a symlink planted to redirect our directories: refuse both. A link
   * this process's user made, to a directory of its own (a root on another disk), is followed.
   */
  async #checkRoot(): Promise<void> {
    const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
    const notOurs = (what: string, owner: number) => Object.assign(new Error(`${what} is owned by uid ${owner}, not by this process (uid ${uid})`), { code: 'EPERM' });
    const link = await fs.promises.lstat(this.root);
    if (link.isSymbolicLink() && uid !== undefined && link.uid !== uid) throw notOurs('it is a symbolic link that', link.uid);
    const info = link.isSymbolicLink() ? await fs.promises.stat(this.root) : link;
    if (!info.isDirectory()) throw Object.assign(new Error('it is not a directory'), { code: 'ENOTDIR' });
    if (uid !== undefined && info.uid !== uid) throw notOurs(link.isSymbolicLink() ? 'the directory it links to' : 'it', info.uid);
  }

  /** Why no workspace can be made under the root (health()), or undefined when one can. */
  async rootProblem(): Promise<string | undefined> {
    try {
      await this.#ensureRoot();
      return undefined;
    } catch (error) {
      return (error as Error).message;
    }
  }

  /** Create a fresh 0700 directory for `executionId`. Unsafe ids are refused with WorkspaceError. */
  async acquire(executionId: string): Promise<WorkspaceLease> {
    const reason = unsafeExecutionIdReason(executionId);
    if (reason) {
      throw new WorkspaceError(`Unsafe execution id for a workspace: ${reason}`, {
        // Not String(executionId): a null-prototype object (or one whose toString throws) would throw a TypeError here.
        details: { executionId: typeof executionId === 'string' ? executionId.slice(0, 200) : Object.prototype.toString.call(executionId), reason },
      });
    }
    let dir: string | undefined;
    // Two attempts: a root removed behind our back (a tmp cleaner) is recreated once, not reported.
    for (let attempt = 1; dir === undefined; attempt++) {
      await this.#ensureRoot();
      const prefix = path.join(this.root, `kbx-${process.pid}.${hostTag()}-${executionId}-${process.getBuiltinModule('node:crypto').randomBytes(1).toString('hex')}`);
      CREATING.add(prefix);
      try {
        // mkdtemp adds 6 random characters and creates the directory with mode 0700, atomically.
        dir = await fs.promises.mkdtemp(prefix);
        LIVE.add(dir);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          this.#rootReady = undefined;
          if (attempt < 2) continue;
        }
        throw new WorkspaceError(`Cannot create workspace for ${executionId}: ${(error as Error).message}`, {
          details: { root: this.root, executionId, code },
          cause: error,
        });
      } finally {
        CREATING.delete(prefix);
      }
    }
    return new Lease(executionId, dir, (error) => this.#releaseFailed(error));
  }

  /**
   * Directories of leases that could not be removed (nothing else says so: a release fails in
   * the background of an execution's result). health() lists it; said once as a process warning.
   */
  leftBehind(): string | undefined {
    const { count, last } = this.#leftBehind;
    if (count === 0) return undefined;
    return `${count} workspace director${count === 1 ? 'y' : 'ies'} under ${this.root} could not be removed (the last: ${last}); \`kb-plugin-exec sweep --workspace-root <root>\` retries`;
  }

  #releaseFailed(error: WorkspaceError): void {
    if (this.#leftBehind.count++ === 0) process.emitWarning(`A workspace directory could not be removed: ${error.message}`, { code: 'KB_PLUGIN_WORKSPACE_LEFT' });
    this.#leftBehind.last = error.message;
  }

  /**
   * Remove directories left behind by processes that no longer exist (a killed host), and
   * directories of this process that no live lease holds. Never touches other live processes'
   * leases. Directories made on another machine or in another PID namespace are kept and listed
   * (`foreign`): their process cannot be seen from here. With `foreignOlderThanMs`, those not
   * modified for that long are removed too (a container long gone, on a volume its successors
   * share): give it more than any execution lasts.
   */
  async sweep(options: { foreignOlderThanMs?: number } = {}): Promise<SweepResult> {
    refuseUnknownKeys(options, ['foreignOlderThanMs'], 'sweep()');
    const olderThan = options?.foreignOlderThanMs;
    if (olderThan !== undefined && !(typeof olderThan === 'number' && olderThan >= 0 && Number.isFinite(olderThan))) {
      throw new WorkspaceError(`sweep({ foreignOlderThanMs }) must be a number of milliseconds, 0 or more, got ${String(olderThan)}`, { details: { field: 'foreignOlderThanMs' } });
    }
    const result: SweepResult = { removed: [], failed: [], foreign: [] };
    const foreignCutoff = olderThan === undefined ? undefined : Date.now() - olderThan;
    let names: string[];
    try {
      names = await fs.promises.readdir(this.root);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return result;
      throw new WorkspaceError(`Cannot read workspace root ${this.root}`, { cause: error });
    }
    for (const name of names) {
      const match = DIR_PATTERN.exec(name);
      if (!match) continue;
      const pid = Number(match[1]);
      const dir = path.join(this.root, name);
      const foreign = match[2] !== undefined && match[2] !== hostTag();
      if (foreign && !(foreignCutoff !== undefined && (await modifiedBefore(dir, foreignCutoff)))) {
        result.foreign.push(dir);
        continue;
      }
      const stale = foreign || (pid === process.pid ? !LIVE.has(dir) && !CREATING.has(dir.slice(0, -MKDTEMP_SUFFIX)) : !processAlive(pid));
      if (!stale) continue;
      try {
        await removeTree(dir);
        result.removed.push(dir);
      } catch (error) {
        result.failed.push({ dir, error: (error as Error).message });
      }
    }
    return result;
  }
}

/** An option `what` does not take is a WorkspaceError naming it (and the nearest it takes), not ignored. */
function refuseUnknownKeys(options: unknown, known: readonly string[], what: string): void {
  if (options === null || typeof options !== 'object') return;
  const unknown = Object.keys(options).find((key) => !known.includes(key));
  if (unknown === undefined) return;
  const near = nearest(unknown, known);
  throw new WorkspaceError(`${what} does not take "${unknown}"${near ? `; did you mean "${near}"?` : ''} (it takes ${known.join(', ')})`, { details: { field: unknown } });
}

/**
 * `mkdir -p`, one level at a time. Not `fs.mkdir({ recursive: true })`: under a pseudo file system
 * that refuses new entries with ENOENT (a root under /proc), Node's retries it for ever.
 */
async function makeDirectories(dir: string, mode: number): Promise<void> {
  try {
    await fs.promises.mkdir(dir, { mode });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    const parent = path.dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw error;
    await makeDirectories(parent, mode);
    // The parent exists now: a second ENOENT is the file system's refusal, and is said.
    await fs.promises.mkdir(dir, { mode }).catch((again: NodeJS.ErrnoException) => {
      if (again.code !== 'EEXIST') throw again;
    });
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
 * the PID namespace (two containers on one machine share neither pids nor, by default, a name).
 */
function hostTag(): string {
  if (tag === undefined) {
    let namespace = '';
    try {
      namespace = fs.readlinkSync('/proc/self/ns/pid');
    } catch {
      // Not Linux, or no /proc: the host name alone.
    }
    tag = process.getBuiltinModule('node:crypto').createHash('sha256').update(`${os.hostname()}\n${namespace}`).digest('hex').slice(0, 8);
  }
  return tag;
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

class Lease implements WorkspaceLease {
  readonly executionId: string;
  readonly dir: string;
  #releasing: Promise<void> | undefined;
  readonly #onFailure: (error: WorkspaceError) => void;

  constructor(executionId: string, dir: string, onFailure: (error: WorkspaceError) => void) {
    this.executionId = executionId;
    this.dir = dir;
    this.#onFailure = onFailure;
  }

  get released(): boolean {
    return this.#releasing !== undefined;
  }

  release(): Promise<void> {
    this.#releasing ??= removeTree(this.dir).then(
      () => {
        LIVE.delete(this.dir);
      },
      (error: unknown) => {
        LIVE.delete(this.dir);
        const failure = new WorkspaceError(`Cannot remove workspace ${this.dir}: ${(error as Error).message}`, {
          details: { dir: this.dir, code: (error as NodeJS.ErrnoException).code },
          cause: error,
        });
        this.#onFailure(failure);
        throw failure;
      },
    );
    return this.#releasing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/** How many entries (files and folders) listArtifacts looks at, at most: a tree of 100,000 empty folders must not hold up a result. */
const MAX_ARTIFACT_ENTRIES = 10_000;

/**
 * Relative paths of the regular files under `dir` (symlinks listed but not followed; FIFOs,
 * sockets and devices left out), capped in number and in the entries looked at. A name that is not valid UTF-8 is left out: as a string it
 * would be a lossy copy, naming no file (two such names could even come out the same). On Linux
 * folders are walked through descriptors (anchored-tree.ts), down to 64 levels.
 */
export async function listArtifacts(dir: string, limit = 1000): Promise<string[]> {
  const out: string[] = [];
  let looked = 0;
  const visit = (child: string, kind: EntryKind): boolean => {
    if (out.length >= limit || ++looked > MAX_ARTIFACT_ENTRIES) return false;
    if (kind === 'file') out.push(child);
    return out.length < limit;
  };
  if (anchoredTreesAvailable()) await listAnchored(dir, visit);
  else await listByPath(dir, visit);
  return out.sort();
}

/** visitTree by paths (no /proc to hold folders open by). */
function listByPath(dir: string, visit: (child: string, kind: EntryKind) => boolean): Promise<void> {
  const leave = async (): Promise<void> => {};
  return visitTree(
    dir,
    (at) => fs.promises.readdir(at, { withFileTypes: true, encoding: 'buffer' }),
    async (at, name) => ({ at: path.join(at, name.toString('utf8')), leave }),
    visit,
  );
}
