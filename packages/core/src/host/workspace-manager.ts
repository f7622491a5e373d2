import path from 'node:path';
import { WorkspaceError } from '../errors.js';
import { didYouMean, firstUnknownKey } from './nearest-name.js';
import { anchoredTreesAvailable, folderEntries, listAnchored, visitTree, type EntryKind } from './anchored-tree.js';
import { makeDirectories } from './make-directories.js';
import { removeTree } from './remove-tree.js';
import { CREATING, KEPT_SUFFIX, LIVE, ownerTag, sweepRoot, type SweepResult } from './workspace-sweep.js';
import { LeftBehind } from './left-behind.js';
import { unnamedWorkingDirectory, unnamedWorkingDirectoryProblem } from './working-directory.js';
// Node's built-ins by getBuiltinModule, taken when this module loads: an ES import of a built-in
// also builds its ES facade, which every host would pay for at start-up (docs/benchmarks.md, Start-up).
// node:fs/promises on first use (`fs.promises`): Node loads it on demand, ~5 ms, and importing core should not.
const fs = process.getBuiltinModule('node:fs');
const os = process.getBuiltinModule('node:os');

export type { SweepResult } from './workspace-sweep.js';

export interface WorkspaceManagerOptions {
  /** Folder under which execution directories are created (made 0700 if missing): a path, or a `file:///` URL string. */
  root: string;
}

export interface WorkspaceLease extends AsyncDisposable {
  readonly executionId: string;
  /** Absolute path of this execution's private directory (mode 0700). */
  readonly dir: string;
  readonly released: boolean;
  /** Remove the directory and everything in it. Idempotent; never follows symlinks out of it. */
  release(): Promise<void>;
  /**
   * Leave the directory for the host instead (what `keepWorkspace: true` does): `sweep()` never
   * removes it, here or in another process, until the host has removed it. A `<dir>.kept` file
   * beside it says so; `sweep()` removes that file once the directory is gone.
   */
  keep(): Promise<void>;
}

/** Longest execution id accepted for a workspace directory name. */
export const MAX_EXECUTION_ID_LENGTH = 128;
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
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
 * One private directory per execution under `root`.
 * Directory names carry the creating process id, which is how `sweep()` tells stale ones apart.
 */
export class WorkspaceManager {
  readonly root: string;
  #rootReady: Promise<void> | undefined;
  /** The root directory #checkRoot found ours (`dev:ino`): a workspace made elsewhere (the root swapped for a link since) is not used. */
  #rootIdentity = '';
  /** Leases whose directory could not be removed, or whose `.kept` mark could not be written. */
  readonly #trouble = new LeftBehind();

  constructor(options: WorkspaceManagerOptions) {
    refuseUnknownKeys(options, ['root'], 'WorkspaceManager');
    if (!options || typeof options.root !== 'string' || options.root.length === 0 || options.root.includes('\0')) {
      throw new WorkspaceError('WorkspaceManager needs { root: <non-empty path> }', { details: { field: 'root' } });
    }
    // `file:/…` and `file:///…`: a URL; `file:x` stays a relative folder of that name (as it was).
    const given = options.root.startsWith('file:/') ? rootFromUrl(options.root) : options.root;
    // Resolved from a working directory Node cannot name, the root would be made as another folder.
    const unnamed = path.isAbsolute(given) ? undefined : unnamedWorkingDirectory();
    if (unnamed) throw new WorkspaceError(`WorkspaceManager root ${JSON.stringify(given)} is relative, and ${unnamedWorkingDirectoryProblem(unnamed)}`, { details: { field: 'root', root: given, reason: 'working-directory-not-utf8' } });
    this.root = path.resolve(given);
  }

  /** The lease directories of every manager in this thread not released yet (each worker thread has its own): what it leaves behind if the process ends now. */
  static liveLeases(): string[] {
    return [...LIVE];
  }

  /** A manager rooted in the OS temp directory (one folder per OS user). */
  static default(): WorkspaceManager {
    return defaultManager();
  }

  #ensureRoot(): Promise<void> {
    // A root no workspace fits under is not made at all.
    const tooLong = pathTooLong(this.root);
    this.#rootReady ??= (tooLong ? Promise.reject(Object.assign(new Error(tooLong), { code: 'ENAMETOOLONG' })) : makeDirectories(this.root, 0o700))
      .then(() => this.#checkRoot())
      .catch((error: unknown) => {
        this.#rootReady = undefined;
        throw new WorkspaceError(`Cannot create workspace root ${shortened(this.root)}: ${fileOnTheWay(this.root, error) ?? (error as Error).message}`, {
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
    const info = link.isSymbolicLink() ? await fs.promises.stat(this.root).catch((error: NodeJS.ErrnoException) => brokenLink(this.root, error)) : link;
    if (!info.isDirectory()) throw Object.assign(new Error('it is not a directory'), { code: 'ENOTDIR' });
    if (uid !== undefined && info.uid !== uid) throw notOurs(link.isSymbolicLink() ? 'the directory it links to' : 'it', info.uid);
    this.#rootIdentity = `${info.dev}:${info.ino}`;
    // Ours, yet nothing can be made in it (mode 0500, a read-only mount): said now, and in health().
    await fs.promises.access(this.root, fs.constants.W_OK | fs.constants.X_OK).catch((error: NodeJS.ErrnoException) => {
      throw Object.assign(new Error(`no folder can be made in it (${error.code ?? error.message})`), { code: error.code });
    });
  }

  /** Why no workspace can be made under the root (health()), or undefined when one can: looked at anew each time. */
  async rootProblem(): Promise<string | undefined> {
    try {
      await this.#rootReady?.catch(() => undefined);
      this.#rootReady = undefined;
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
      const prefix = path.join(this.root, `kbx-${ownerTag()}-${executionId}-${process.getBuiltinModule('node:crypto').randomBytes(1).toString('hex')}`);
      CREATING.add(prefix);
      try {
        // mkdtemp adds 6 random characters and creates the directory with mode 0700, atomically.
        const made = await fs.promises.mkdtemp(prefix);
        LIVE.add(made);
        await this.#stillUnderRoot(made);
        dir = made;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // The root changed since it was looked at (removed, made read-only, swapped): looked at again.
        this.#rootReady = undefined;
        if ((code === 'ENOENT' || code === 'EXDEV') && attempt < 2) continue;
        const rootProblem = code === 'ENOENT' ? undefined : await this.rootProblem();
        // Said as at the start when the root is what is wrong now.
        throw new WorkspaceError(rootProblem ?? `Cannot create workspace for ${executionId}: ${(error as Error).message}`, {
          details: { root: this.root, executionId, code },
          cause: error,
        });
      } finally {
        CREATING.delete(prefix);
      }
    }
    // A workspace could be made: what a passing condition (a read-only remount, the process out of
    // descriptors for longer than removeTree waits) kept from being removed is tried again.
    this.#trouble.retry();
    return new Lease(executionId, dir, (error, keeping) => (keeping ? this.#trouble.unmarked(dir, error) : this.#trouble.left(dir, error)));
  }

  /** A workspace made under a root that is no longer the one found ours (swapped for a link meanwhile) is removed: EXDEV. */
  async #stillUnderRoot(dir: string): Promise<void> {
    const now = await fs.promises.stat(this.root).catch(() => undefined);
    if (now && `${now.dev}:${now.ino}` === this.#rootIdentity) return;
    LIVE.delete(dir);
    await fs.promises.rmdir(dir).catch(() => undefined);
    throw Object.assign(new Error(`the workspace root ${shortened(this.root)} changed after it was checked`), { code: 'EXDEV' });
  }

  /**
   * Directories of leases that could not be removed (nothing else says so: a release fails in
   * the background of an execution's result). health() lists it; said once as a process warning.
   */
  leftBehind(): string | undefined {
    return this.#trouble.describe(this.root);
  }

  /**
   * Remove directories left behind by processes that no longer exist (a killed host), and
   * directories of this process that no live lease holds. Never touches other live processes'
   * leases, nor a workspace an execution kept (`keepWorkspace: true`: listed as `kept`).
   * Directories made on another machine or in another PID namespace are kept and listed
   * (`foreign`): their process cannot be seen from here. With `foreignOlderThanMs`, those not
   * modified for that long are removed too (a container long gone, on a volume its successors
   * share): give it more than any execution lasts.
   */
  async sweep(options: { foreignOlderThanMs?: number } = {}): Promise<SweepResult> {
    // `sweep(3_600_000)` from plain JavaScript: the age alone, which read as no options would keep every foreign folder.
    if (options !== null && (typeof options !== 'object' || Array.isArray(options))) {
      throw new WorkspaceError(`sweep() takes its options as an object such as { foreignOlderThanMs: 3600000 }, got ${Array.isArray(options) ? 'an array' : `a ${typeof options}`}`, { details: { field: '(options)' } });
    }
    refuseUnknownKeys(options, ['foreignOlderThanMs'], 'sweep()');
    const olderThan = options?.foreignOlderThanMs;
    if (olderThan !== undefined && !(typeof olderThan === 'number' && olderThan >= 0 && Number.isFinite(olderThan))) {
      throw new WorkspaceError(`sweep({ foreignOlderThanMs }) must be a number of milliseconds, 0 or more, got ${String(olderThan)}`, { details: { field: 'foreignOlderThanMs' } });
    }
    return sweepRoot(this.root, olderThan);
  }
}

/** An option `what` does not take is a WorkspaceError naming it (and the nearest it takes), not ignored. */
function refuseUnknownKeys(options: unknown, known: readonly string[], what: string): void {
  if (options === null || typeof options !== 'object') return;
  const unknown = firstUnknownKey(options, known);
  if (unknown === undefined) return;
  throw new WorkspaceError(`${what} does not take "${unknown}"${didYouMean(unknown, known)} (it takes ${known.join(', ')})`, { details: { field: unknown } });
}

class Lease implements WorkspaceLease {
  readonly executionId: string;
  readonly dir: string;
  #releasing: Promise<void> | undefined;
  readonly #onFailure: (error: WorkspaceError, keeping: boolean) => void;

  constructor(executionId: string, dir: string, onFailure: (error: WorkspaceError, keeping: boolean) => void) {
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
        this.#onFailure(failure, false);
        throw failure;
      },
    );
    return this.#releasing;
  }

  keep(): Promise<void> {
    this.#releasing ??= markKept(this.dir).then(
      () => {
        LIVE.delete(this.dir);
      },
      (error: unknown) => {
        // Kept all the same, as a live lease: sweep() in this process leaves it.
        const failure = new WorkspaceError(`Cannot mark workspace ${this.dir} as kept: ${(error as Error).message}`, { details: { dir: this.dir, code: (error as NodeJS.ErrnoException).code }, cause: error });
        this.#onFailure(failure, true);
        throw failure;
      },
    );
    return this.#releasing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/**
 * The empty `<dir>.kept` mark, made if missing. Never through a link put there, never truncating
 * what is there, never waiting on a FIFO: a spare's handler may write the root (docs/backends/subprocess.md),
 * and a link there would have the host empty the file it leads to.
 */
async function markKept(dir: string): Promise<void> {
  const { O_WRONLY, O_CREAT, O_NOFOLLOW, O_NONBLOCK } = fs.constants;
  const mark = await fs.promises.open(`${dir}${KEPT_SUFFIX}`, O_WRONLY | O_CREAT | (O_NOFOLLOW ?? 0) | (O_NONBLOCK ?? 0), 0o600);
  await mark.close();
}

/** For mkdir's ENOTDIR (a path through a file): which folder on the way is a file, said plainly. */
function fileOnTheWay(root: string, error: unknown): string | undefined {
  if ((error as NodeJS.ErrnoException)?.code !== 'ENOTDIR') return undefined;
  for (let dir = path.dirname(root); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    try {
      if (!fs.statSync(dir).isDirectory()) return `${dir} is a file, not a folder (ENOTDIR)`;
    } catch {
      // Not there, or not ours to look at: the one above may say.
    }
  }
  return undefined;
}

/** How many entries (files and folders) listArtifacts looks at, at most: a tree of 100,000 empty folders must not hold up a result. */
const MAX_ARTIFACT_ENTRIES = 10_000;

/**
 * Relative paths of the regular files under `dir` (symbolic links left out, as FIFOs, sockets and
 * devices are: a link a plugin made may lead anywhere on the host, and a host that reads its
 * artifacts would read that for the plugin), capped in number and in the entries looked at. A name that is not valid UTF-8 is left out: as a string it
 * would be a lossy copy, naming no file (two such names could even come out the same). On Linux
 * folders are walked through descriptors (anchored-tree.ts), down to 64 levels. Never rejects.
 * `truncated`: the list is not whole (the limit reached with a file left out, the listing stopped
 * early, a name left out, or a folder it could not read or go deeper into).
 */
export async function listArtifacts(dir: string, limit = 1000): Promise<{ files: string[]; truncated: boolean }> {
  const out: string[] = [];
  let looked = 0;
  let truncated = false;
  // Past the limit it looks on until one more file (then the list is cut) or the tree's end.
  const visit = (child: string, kind: EntryKind): boolean => {
    // What the walk cannot show: the list is not whole, but it goes on.
    if (kind === 'unlisted') return (truncated = true);
    if (++looked > MAX_ARTIFACT_ENTRIES || (kind === 'file' && out.length >= limit)) return !(truncated = true);
    if (kind === 'file') out.push(child);
    return true;
  };
  try {
    if (anchoredTreesAvailable()) await listAnchored(dir, visit);
    else await listByPath(dir, visit);
  } catch {
    // A folder that cannot be read now (the process out of descriptors: EMFILE) ends the listing,
    // with what it found so far: a listing is never why a result is lost.
    truncated = true;
  }
  return { files: out.sort(), truncated };
}

/** visitTree by paths (no /proc to hold folders open by). */
function listByPath(dir: string, visit: (child: string, kind: EntryKind) => boolean): Promise<void> {
  const leave = async (): Promise<void> => {};
  return visitTree(
    dir,
    folderEntries,
    async (at, name) => ({ at: path.join(at, name.toString('utf8')), leave }),
    visit,
  );
}

/** A root given as a `file:///` URL string (as `plugins` takes folders), as a path. */
function rootFromUrl(url: string): string {
  try {
    return process.getBuiltinModule('node:url').fileURLToPath(url);
  } catch (error) {
    throw new WorkspaceError(`Workspace root ${url} is not a usable file: URL: ${(error as Error).message}`, { details: { field: 'root' }, cause: error });
  }
}

/** The longest path the system takes (PATH_MAX less its NUL), where known. */
const PATH_MAX_BYTES = process.platform === 'linux' ? 4095 : process.platform === 'darwin' ? 1023 : Number.POSITIVE_INFINITY;
/** What a workspace adds to the root's path: `/kbx-<owner>-<uuid>-<2 hex><6 random>` (the owner up to ~40: pid, host, thread, start), and a file in it. */
const LEASE_PATH_BYTES = 110;

/** Why no workspace fits under `root` (its path is too long for one more), or undefined. */
function pathTooLong(root: string): string | undefined {
  const bytes = Buffer.byteLength(root);
  if (bytes + LEASE_PATH_BYTES <= PATH_MAX_BYTES) return undefined;
  return `its path is ${bytes} bytes long: a workspace under it (about ${LEASE_PATH_BYTES} bytes more) would pass the ${PATH_MAX_BYTES} bytes this system takes in a path; choose a shorter root`;
}

/** A root that is a symbolic link which cannot be followed, said so with where it points. */
async function brokenLink(root: string, error: NodeJS.ErrnoException): Promise<never> {
  const target = await fs.promises.readlink(root).catch(() => '?');
  const why = error.code === 'ENOENT' ? 'which does not exist' : `which cannot be followed (${error.code ?? error.message})`;
  throw Object.assign(new Error(`it is a symbolic link to ${target}, ${why}`), { code: error.code });
}

/** A path for a message: one of thousands of characters shows its two ends (the error's details keep it whole). */
function shortened(p: string): string {
  return p.length <= 240 ? p : `${p.slice(0, 100)}…(${p.length} characters)…${p.slice(-100)}`;
}

/** WorkspaceManager.default(), outside the class: a class that names itself inside is renamed by the bundler (`class _WorkspaceManager`). */
function defaultManager(): WorkspaceManager {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 'user';
  return new WorkspaceManager({ root: path.join(os.tmpdir(), `kb-plugin-workspaces-${uid}`) });
}
