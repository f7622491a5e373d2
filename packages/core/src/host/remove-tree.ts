import path from 'node:path';
import { anchoredTreesAvailable, removeAnchored } from './anchored-tree.js';
import { setTimeout } from '../real-timers.js';
// By getBuiltinModule, as in workspace-manager.ts: no ES facade of node:fs built at start-up.
const fs = process.getBuiltinModule('node:fs');

/** Deeper than this many characters, a folder is moved up to the top of the tree before `rm` (PATH_MAX is 4096 on Linux). */
const SHALLOW_CHARS = 2048;
/** One pass cuts every deep chain into pieces near the top; a few more cover what changed meanwhile. */
const MAX_PASSES = 4;

/**
 * `rm -rf` that copes with what a plugin may leave: read-only files and folders (permissions are
 * restored on directories only, never through a symlink), symlinks (removed, not followed), and a
 * tree deeper than an absolute path can name (made with `mkdir` + `chdir` in a loop). On Linux
 * every name is looked up in a folder held open, so a plugin's process still running cannot swap
 * a link in and have the host follow it (anchored-tree.ts). Elsewhere, `fs.rm`: a tree too deep
 * for it (ENAMETOOLONG) has its deep folders moved up, by paths short enough, first.
 */
export async function removeTree(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await removeTreeOnce(dir);
    } catch (error) {
      const delay = OUT_OF_DESCRIPTORS_RETRY_MS[attempt];
      if (delay === undefined || !OUT_OF_DESCRIPTORS.includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/**
 * The process (EMFILE) or the system (ENFILE) out of descriptors is how things stand at that
 * moment, not something of the tree's: the removal is tried again a little later, a few times,
 * before the directory is said to be left behind.
 */
const OUT_OF_DESCRIPTORS = ['EMFILE', 'ENFILE'];
const OUT_OF_DESCRIPTORS_RETRY_MS = [100, 400, 1600];

async function removeTreeOnce(dir: string): Promise<void> {
  if (anchoredTreesAvailable()) return removeAnchored(dir);
  for (let pass = 1; ; pass++) {
    try {
      return await removeOnce(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENAMETOOLONG' || pass > MAX_PASSES || !(await bringUpDeepFolders(dir, pass))) throw error;
    }
  }
}

async function removeOnce(dir: string): Promise<void> {
  try {
    await fs.promises.rm(dir, { recursive: true, force: true, maxRetries: 2 });
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'ENOTEMPTY') throw error;
  }
  await makeDirsWritable(dir);
  await fs.promises.rm(dir, { recursive: true, force: true, maxRetries: 2 });
}

async function makeDirsWritable(dir: string): Promise<void> {
  let info;
  try {
    info = await fs.promises.lstat(dir);
  } catch {
    return;
  }
  if (!info.isDirectory()) return;
  await fs.promises.chmod(dir, 0o700).catch(() => undefined);
  let entries;
  try {
    entries = await fs.promises.readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  await Promise.all(entries.filter((e) => e.isDirectory()).map((e) => makeDirsWritable(path.join(dir, e.name))));
}

/**
 * Move every folder whose path is longer than SHALLOW_CHARS to the top of `dir` (as
 * `.kb-deep-<pass>-<n>`), walking only paths shorter than that (symlinks are not folders here:
 * never followed). True when something moved.
 */
async function bringUpDeepFolders(dir: string, pass: number): Promise<boolean> {
  let moved = 0;
  const walk = async (at: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.promises.readdir(at, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (!entry.isDirectory()) continue;
      const child = path.join(at, entry.name);
      if (child.length <= SHALLOW_CHARS) {
        await walk(child);
        continue;
      }
      // A rename needs to write its folder, which the plugin may have made read-only.
      await fs.promises.chmod(at, 0o700).catch(() => undefined);
      const top = path.join(dir, `.kb-deep-${pass}-${moved}`);
      const renamed = await fs.promises.rename(child, top).then(
        () => true,
        () => false,
      );
      // Now near the top, it is walked in turn: one pass cuts a chain of any depth into pieces.
      if (renamed) {
        moved++;
        await walk(top);
      }
    }
  };
  await walk(dir);
  return moved > 0;
}
