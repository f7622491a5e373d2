import { hostMayAccess } from './host-permissions.js';
import { setImmediate } from '../real-timers.js';

// By getBuiltinModule, as in workspace-manager.ts: no ES facade of node:fs built at start-up.
const fs = process.getBuiltinModule('node:fs');

/**
 * Removing and listing a tree that someone else may change meanwhile: a workspace that a plugin's
 * process still alive (a warm spare's, sharing the workspace root) fills with folders and links
 * it swaps in and out of place by rename. A path-based walk (`fs.rm`, a readdir of `dir/sub`)
 * that looks at `sub`, finds a folder, and then reads `dir/sub` again may meet a link there and
 * follow it out: deleting, listing or chmodding the host's own files. Here every name is looked
 * up in a folder held open (Linux's `/proc/self/fd/<fd>/<name>`: the folder itself, wherever it
 * was moved), folders are opened without following a link (`O_NOFOLLOW`), and what is not a
 * folder is unlinked, never followed.
 */

/** Linux's O_PATH: a descriptor that names a folder without reading it (it may be mode 000). */
const O_PATH = 0o10000000;
export const FOLDER_FLAGS = O_PATH | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW;
/** Folders held open at once along one branch; deeper ones are moved up to the top (removal) or not listed. */
export const MAX_HELD_DEPTH = 64;
/** Passes over the tree before a removal gives up (a tree deeper than 64 folders needs one per 64 levels). */
export const MAX_PASSES = 10_000;
/** Entries of a folder unlinked at once. */
const UNLINK_BATCH = 32;
/** Passes in a row that remove nothing before it gives up (an immutable file; or what still runs keeps moving things). */
export const MAX_IDLE_PASSES = 100;

let available: boolean | undefined;

/**
 * Whether this system names an open folder by path (Linux with /proc) and this process may use
 * such names: otherwise the path-based walk is used. Under Node's permission model a name under
 * `/proc/self/fd` is checked as the path it spells, which the host's `--allow-fs-*` grants do not
 * cover (and granting them would grant every file an open descriptor leads to): there `existsSync`
 * itself throws ERR_ACCESS_DENIED.
 */
export function anchoredTreesAvailable(): boolean {
  available ??= process.platform === 'linux' && hostMayAccess('fs.read', '/proc/self/fd') && hostMayAccess('fs.write', '/proc/self/fd') && fs.existsSync('/proc/self/fd');
  return available;
}

/** The open folder `fd`, or `name` in it, as a path. */
export function inFolder(fd: number, name?: Buffer): Buffer {
  const folder = Buffer.from(`/proc/self/fd/${fd}`);
  return name ? Buffer.concat([folder, Buffer.from('/'), name]) : folder;
}

export const codeOf = (error: unknown): string | undefined => (error as NodeJS.ErrnoException)?.code;

/** Whether opening a folder failed for there being none there now (gone, a file, a link not followed): else the error is the caller's to throw. */
export function notAFolderNow(error: unknown): boolean {
  const code = codeOf(error);
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP';
}

/** What an unlink's error says: gone all the same (true), or a folder, or not ours to unlink (false); anything else is thrown. */
export function unlinkFailed(error: unknown): boolean {
  const code = codeOf(error);
  if (code === 'ENOENT') return true;
  if (code === 'EISDIR' || code === 'EPERM') return false;
  throw error;
}

/** The folder at `at`, held open; undefined when it is not a folder (now: a link, a file, gone). `writable`: made 0700 first. */
async function openFolder(at: Buffer, writable: boolean) {
  let folder;
  try {
    folder = await fs.promises.open(at, FOLDER_FLAGS);
  } catch (error) {
    if (notAFolderNow(error)) return undefined;
    throw error;
  }
  // Through the descriptor: the very folder, never a link put in its place.
  if (writable) await fs.promises.chmod(inFolder(folder.fd), 0o700).catch(() => undefined);
  return folder;
}

/** Unlink what is at `at` unless it is a folder: true when it is gone. */
async function unlinked(at: Buffer): Promise<boolean> {
  try {
    await fs.promises.unlink(at);
    return true;
  } catch (error) {
    return unlinkFailed(error);
  }
}

/**
 * `rm -rf dir`, never following a link, whatever the tree's contents do meanwhile. An empty
 * folder (most workspaces) goes with one `rmdir`; a file or link in its place is unlinked.
 */
export async function removeAnchored(dir: string): Promise<void> {
  const walk: Walk = { hoisted: 0, changed: 0 };
  let last: unknown;
  for (let pass = 0, idle = 0; pass < MAX_PASSES && idle < MAX_IDLE_PASSES; pass++) {
    try {
      await fs.promises.rmdir(dir);
      return;
    } catch (error) {
      const code = codeOf(error);
      if (code === 'ENOENT') return;
      if (code === 'ENOTDIR') return void (await unlinked(Buffer.from(dir)));
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      last = error;
    }
    const top = await openFolder(Buffer.from(dir), true);
    if (!top) continue;
    const before = walk.changed;
    try {
      await emptyHeld(top.fd, top.fd, 1, walk);
    } finally {
      await top.close();
    }
    // Nothing it could remove (an immutable file, a mount point) stays, said by `rmdir`'s error.
    idle = walk.changed === before ? idle + 1 : 0;
  }
  throw last;
}

/** One removal's count of what it moved up (the names it gives them) and of everything it changed. */
export interface Walk {
  hoisted: number;
  changed: number;
}

/**
 * Empty the folder held as `fd`, `depth` folders below the top one (`top`): each folder in it is
 * emptied through its own descriptor and removed. Past MAX_HELD_DEPTH a folder is moved up into
 * the top folder instead (a rename never follows a link), to be emptied in the next pass.
 */
async function emptyHeld(fd: number, top: number, depth: number, walk: Walk): Promise<void> {
  const folders: Buffer[] = [];
  // Unlinked a batch at a time (each is a trip to libuv's pool: one by one, 10,000 files took 4 × fs.rm's time).
  let batch: Buffer[] = [];
  const unlinkBatch = async (): Promise<void> => {
    const names = batch;
    batch = [];
    const gone = await Promise.all(names.map((name) => unlinked(inFolder(fd, name))));
    for (let j = 0; j < names.length; j++) {
      if (gone[j]) walk.changed++;
      else folders.push(names[j]!);
    }
  };
  // A folder that cannot be read (on): what it still holds, the next pass meets.
  const unreadable = (): void => {};
  await eachEntry(folderEntries(inFolder(fd)), unreadable, async (entry) => {
    batch.push(entry.name);
    if (batch.length === UNLINK_BATCH) await unlinkBatch();
    return true;
  });
  await unlinkBatch();
  for (const name of folders) {
    const at = inFolder(fd, name);
    const folder = await openFolder(at, true);
    if (!folder) continue;
    try {
      if (depth < MAX_HELD_DEPTH) await emptyHeld(folder.fd, top, depth + 1, walk);
    } finally {
      await folder.close();
    }
    // Refilled, or something else put in its place meanwhile: the next pass meets it.
    const done = depth < MAX_HELD_DEPTH ? fs.promises.rmdir(at) : fs.promises.rename(at, inFolder(top, Buffer.from(`.kb-up-${walk.hoisted++}`)));
    if (await done.then(() => true, () => false)) walk.changed++;
  }
}

/** One entry of a folder, its name as bytes. */
export interface FolderEntry {
  name: Buffer;
  isDirectory(): boolean;
  isFile(): boolean;
}

/** Entries read from a folder at once (one `getdents`), and how many are handled before the event loop gets a turn. */
const ENTRIES_AT_ONCE = 64;
const ENTRIES_PER_TURN = 1024;

/** An opened folder read a few entries at a time: `next()` is null at its end. */
export interface FolderReader {
  next(): FolderEntry | null;
  close(): void;
}

/**
 * The folder at `at`, opened to be read a few entries at a time (names as bytes): a folder of
 * 100,000 names read whole (`readdir`) makes as many Buffers in one turn of the host's event loop,
 * which it then holds for a second and more; a listing that stops early reads no further. Opened
 * on libuv's pool, as `readdir` is; each read of 64 names is one short system call on the
 * descriptor, made here (three trips to the pool for each folder, open, read and close, took a
 * workspace's listing from ~0.33 to ~0.6 ms per execution).
 */
export async function folderEntries(at: Buffer | string): Promise<FolderReader> {
  // @types/node types opendir's names as strings; Node gives Buffers for 'buffer', as readdir does.
  const dir = await fs.promises.opendir(at, { encoding: 'buffer' as BufferEncoding, bufferSize: ENTRIES_AT_ONCE });
  return { next: () => dir.readSync() as unknown as FolderEntry | null, close: () => dir.closeSync() };
}

/**
 * `each` for the entries of a folder until it says to stop (false), the folder closed after; the
 * event loop gets a turn every ENTRIES_PER_TURN entries. A folder that cannot be opened or read
 * on calls `unreadable` instead; what `each` throws is thrown.
 */
async function eachEntry(opening: Promise<FolderReader>, unreadable: (error: unknown) => void, each: (entry: FolderEntry) => Promise<boolean>): Promise<void> {
  let folder: FolderReader;
  try {
    folder = await opening;
  } catch (error) {
    return unreadable(error);
  }
  try {
    for (let count = 1; ; count++) {
      let entry;
      try {
        entry = folder.next();
      } catch (error) {
        return unreadable(error);
      }
      if (entry === null || !(await each(entry))) return;
      if (count % ENTRIES_PER_TURN === 0) await new Promise(setImmediate);
    }
  } finally {
    folder.close();
  }
}

/** Opens one folder for reading (its entries, names as bytes, a few at a time: folderEntries). */
type ReadFolder<T> = (at: T) => Promise<FolderReader>;
/** What a visited entry is: a folder, a regular file, or something else (a link, never followed; a FIFO, a socket, a device). */
/** `unlisted`: something under the folder the walk cannot show (a name not valid UTF-8, a folder it could not read or enter). */
export type EntryKind = 'folder' | 'file' | 'other' | 'unlisted';
/** Enters folder `name` of `at` (`depth`: of `at` below the top): where it is, and how to leave it; undefined: not entered. */
type EnterFolder<T> = (at: T, name: Buffer, depth: number) => Promise<{ at: T; leave(): Promise<void> } | undefined>;

/**
 * Visit what is under the folder `top` (links as they are, never followed): `visit` gets each
 * relative path and what it is, and says whether to go on. A name that is not valid
 * UTF-8, and a folder that cannot be read or entered (past MAX_HELD_DEPTH, say), are visited as
 * `unlisted` (see listArtifacts). How a folder is read and entered is the caller's.
 */
export async function visitTree<T>(top: T, read: ReadFolder<T>, enter: EnterFolder<T>, visit: (path: string, kind: EntryKind) => boolean): Promise<void> {
  let going = true;
  const walk = async (at: T, rel: string, depth: number): Promise<void> => {
    // A folder that cannot be read (on): what it holds is not shown. The top gone (its handler
    // removed its own workspace) hides nothing; the top there but unreadable (its handler made it mode 000) hides all of it.
    const unreadable = (error: unknown): void => {
      const gone = codeOf(error) === 'ENOENT' || codeOf(error) === 'ENOTDIR';
      if (rel || !gone) going = visit(rel, 'unlisted');
    };
    await eachEntry(read(at), unreadable, async (entry) => (going = await visitEntry(at, rel, depth, entry)));
  };
  const visitEntry = async (at: T, rel: string, depth: number, entry: FolderEntry): Promise<boolean> => {
    const name = entry.name.toString('utf8');
    const child = rel ? `${rel}/${name}` : name;
    if (!Buffer.from(name, 'utf8').equals(entry.name)) return visit(child, 'unlisted');
    const kind: EntryKind = entry.isDirectory() ? 'folder' : entry.isFile() ? 'file' : 'other';
    if (!visit(child, kind)) return false;
    if (kind !== 'folder') return true;
    const inner = await enter(at, entry.name, depth);
    if (!inner) return visit(child, 'unlisted');
    try {
      await walk(inner.at, child, depth + 1);
    } finally {
      await inner.leave();
    }
    return going;
  };
  await walk(top, '', 1);
}

/** visitTree through folders held open, down to MAX_HELD_DEPTH. */
export async function listAnchored(dir: string, visit: (path: string, kind: EntryKind) => boolean): Promise<void> {
  const top = await openFolder(Buffer.from(dir), false);
  if (!top) return;
  const read: ReadFolder<number> = (fd) => folderEntries(inFolder(fd));
  const enter: EnterFolder<number> = async (fd, name, depth) => {
    const folder = depth < MAX_HELD_DEPTH ? await openFolder(inFolder(fd, name), false) : undefined;
    return folder && { at: folder.fd, leave: () => folder.close() };
  };
  try {
    await visitTree(top.fd, read, enter, visit);
  } finally {
    await top.close();
  }
}
