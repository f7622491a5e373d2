import { closeSync, constants, fchmodSync, fchownSync, fstatSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { PermissionDeniedError } from '@kb-labs/plugin-execution-core';
import { shownControls } from '@kb-labs/plugin-execution-core/backend-kit';
import type { SandboxUser } from './sandbox.js';

/** A folder on the way, opened only if it is one (a link there is ENOTDIR). */
const FOLDER = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
/** The last part, a folder or a file, never through a link (ELOOP), never waiting on a FIFO. */
const LAST = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const SET_GID = 0o2000;

/**
 * Make `folder` (below `base`, which the host trusts) and the folders on its way where missing.
 * A folder that is already there as a file stays as it is: it is bound as it is.
 */
export function makeFolder(base: string, folder: string): void {
  closeSync(openWithoutLinks(base, folder, true));
}

/**
 * Hand `target` (below `base`) to `user`, if any, and clear a setgid bit it inherited from a
 * setgid parent (it would pass it to every folder made in it, and the system-call filter refuses
 * the chmods and copies that keep such a bit: seccomp-filter.ts). Done on what was opened, and
 * opened without following a link: never on what a link leads to.
 */
export function handOverFolder(base: string, target: string, user: SandboxUser | undefined): void {
  const fd = openWithoutLinks(base, target, false);
  try {
    if (user) fchownSync(fd, user.uid, user.gid);
    const stat = fstatSync(fd);
    if (stat.isDirectory() && stat.mode & SET_GID) fchmodSync(fd, stat.mode & 0o7777 & ~SET_GID);
  } finally {
    closeSync(fd);
  }
}

/**
 * `target` opened one part at a time from `base`, each part looked up in the folder opened
 * before it (its /proc/self/fd entry) and none through a symbolic link. A declared write folder
 * was checked to pass through no link (declaredFolders), but a folder on its way may lie in
 * another folder a handler writes (a plugin's next generation, or another plugin of the same
 * folder, declaring `out/x/cache` where one declared `out`): its handler may swap `out/x` for a
 * link at any moment, and the host, root, would make or hand over what the link leads to.
 * `make`: missing folders are made.
 */
function openWithoutLinks(base: string, target: string, make: boolean): number {
  const parts = path.relative(base, target).split(path.sep).filter(Boolean);
  let fd = openSync(base, constants.O_RDONLY | constants.O_DIRECTORY);
  for (const [at, part] of parts.entries()) {
    let next: number;
    try {
      next = openPart(fd, part, at === parts.length - 1 ? LAST : FOLDER, make);
    } catch (error) {
      throw openError(error, base, path.join(base, ...parts.slice(0, at + 1)), target);
    } finally {
      closeSync(fd);
    }
    fd = next;
  }
  return fd;
}

function openPart(fd: number, part: string, flags: number, make: boolean): number {
  const at = `/proc/self/fd/${fd}/${part}`;
  try {
    return openSync(at, flags);
  } catch (error) {
    if (!make || (error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  try {
    mkdirSync(at);
  } catch (error) {
    // Made meanwhile (by another host, or a link by a handler): opened as it is now, as above.
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return openSync(at, flags);
}

/**
 * A part found a link, or not a folder, where the checks saw none: PERMISSION_DENIED, naming it.
 * Any other error (the folder gone meanwhile) names the part by its path, not its /proc/self/fd one.
 */
function openError(error: unknown, base: string, part: string, target: string): unknown {
  const failed = error as NodeJS.ErrnoException;
  if (failed.code === 'ELOOP' || failed.code === 'ENOTDIR') {
    const rel = path.relative(base, target);
    return new PermissionDeniedError(
      `${shownControls(part, '')}, on the way to the write folder "${shownControls(rel, '')}", is a symbolic link or not a folder (made so after the folder was checked): refused`,
      { details: { resource: `fs.write:${rel}`, path: part } },
    );
  }
  if (typeof failed.path === 'string' && failed.path.startsWith('/proc/self/fd/')) {
    failed.message = failed.message.replace(failed.path, part);
    failed.path = part;
  }
  return error;
}
