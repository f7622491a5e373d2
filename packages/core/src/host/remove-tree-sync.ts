import { FOLDER_FLAGS, MAX_HELD_DEPTH, MAX_IDLE_PASSES, MAX_PASSES, anchoredTreesAvailable, codeOf, inFolder, notAFolderNow, unlinkFailed, type Walk } from './anchored-tree.js';

// By getBuiltinModule, as in workspace-manager.ts: no ES facade of node:fs built at start-up.
const fs = process.getBuiltinModule('node:fs');

/**
 * removeTree's synchronous form, for a process's last moment (its 'exit' listener, a third stop
 * signal), when no turn of the event loop is left: the workspaces of executions still running
 * there, whose handlers (a sandboxed child, a thread) may still be swapping folders for links.
 * On Linux every name is looked up in a folder held open and nothing is followed (as
 * removeAnchored: anchored-tree.ts); elsewhere `fs.rmSync`. What cannot be removed throws.
 */
export function removeTreeSync(dir: string): void {
  if (!anchoredTreesAvailable()) return fs.rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
  const walk: Walk = { hoisted: 0, changed: 0 };
  let last: unknown;
  for (let pass = 0, idle = 0; pass < MAX_PASSES && idle < MAX_IDLE_PASSES; pass++) {
    try {
      return fs.rmdirSync(dir);
    } catch (error) {
      const code = codeOf(error);
      if (code === 'ENOENT') return;
      if (code === 'ENOTDIR') return void unlinkedSync(Buffer.from(dir));
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      last = error;
    }
    const top = openFolderSync(Buffer.from(dir));
    if (top === undefined) continue;
    const before = walk.changed;
    try {
      emptyHeldSync(top, top, 1, walk);
    } finally {
      fs.closeSync(top);
    }
    idle = walk.changed === before ? idle + 1 : 0;
  }
  throw last;
}

/** The folder at `at` held open and made 0700 through its descriptor; undefined when it is not a folder now. */
function openFolderSync(at: Buffer): number | undefined {
  let fd;
  try {
    fd = fs.openSync(at, FOLDER_FLAGS);
  } catch (error) {
    if (notAFolderNow(error)) return undefined;
    throw error;
  }
  try {
    fs.chmodSync(inFolder(fd), 0o700);
  } catch {
    // Not ours to change (another owner): what it holds may still go.
  }
  return fd;
}

/** Unlink what is at `at` unless it is a folder: true when it is gone. */
function unlinkedSync(at: Buffer): boolean {
  try {
    fs.unlinkSync(at);
    return true;
  } catch (error) {
    return unlinkFailed(error);
  }
}

/**
 * Empty the folder held as `fd` (`depth` below the held top folder `top`): what is not a folder is
 * unlinked; each folder is emptied through its own descriptor and removed, or past MAX_HELD_DEPTH
 * moved up into the top folder for the next pass. What changed meanwhile, the next pass meets.
 */
function emptyHeldSync(fd: number, top: number, depth: number, walk: Walk): void {
  const folders: Buffer[] = [];
  let reader;
  try {
    reader = fs.opendirSync(inFolder(fd), { encoding: 'buffer' as BufferEncoding });
  } catch {
    return;
  }
  try {
    for (let entry = reader.readSync(); entry !== null; entry = reader.readSync()) {
      const name = entry.name as unknown as Buffer;
      if (unlinkedSync(inFolder(fd, name))) walk.changed++;
      else folders.push(name);
    }
  } catch {
    // Unreadable on: the next pass reads it again.
  } finally {
    reader.closeSync();
  }
  for (const name of folders) {
    const at = inFolder(fd, name);
    const folder = openFolderSync(at);
    if (folder === undefined) continue;
    try {
      if (depth < MAX_HELD_DEPTH) emptyHeldSync(folder, top, depth + 1, walk);
    } finally {
      fs.closeSync(folder);
    }
    try {
      if (depth < MAX_HELD_DEPTH) fs.rmdirSync(at);
      else fs.renameSync(at, inFolder(top, Buffer.from(`.kb-up-${walk.hoisted++}`)));
      walk.changed++;
    } catch {
      // Refilled, or something else put in its place: the next pass meets it.
    }
  }
}
