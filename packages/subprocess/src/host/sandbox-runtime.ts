import { execFileSync } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * What a sandboxed child needs from the host to start Node at all: the executable and the shared
 * libraries it loads (with the dynamic loader), as `ldd` lists them. Asked once per executable.
 * Where `ldd` is missing or fails (a static build, a musl system without it), the usual library
 * folders are shown instead: more than needed, read-only, and never secrets.
 */
export function runtimeFiles(execPath: string): readonly string[] {
  let files = runtimeCache.get(execPath);
  if (!files) {
    files = [execPath, ...sharedLibraries(execPath)];
    runtimeCache.set(execPath, files);
  }
  return files;
}

const runtimeCache = new Map<string, readonly string[]>();

/**
 * Why `execPath` itself, not bubblewrap, kept Node from starting in the sandbox, or undefined: a
 * script (a wrapper: its interpreter, /bin/sh, is not in the sandbox, which holds execPath and
 * what ldd lists for it), or a program that ran there and failed without a word.
 */
export function execPathProblem(execPath: string, stderr: string, exitCode: unknown): string | undefined {
  const line = firstLine(execPath);
  if (line?.startsWith('#!')) {
    return `execPath ${execPath} is a script (${line}): a sandbox holds execPath and the libraries ldd lists for it, not a script's interpreter; give execPath as a Node binary`;
  }
  if (stderr === '' && typeof exitCode === 'number') return `execPath ${execPath} -e 0 exited with code ${exitCode} in the sandbox, without a word: execPath must be a Node binary`;
  return undefined;
}

function firstLine(file: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const head = Buffer.alloc(128);
    const read = readSync(fd, head, 0, head.length, 0);
    return head.subarray(0, read).toString('latin1').split('\n')[0]!.trim();
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

const LIBRARY_FOLDERS = ['/lib', '/lib64', '/lib32', '/usr/lib', '/usr/lib64', '/usr/lib32', '/usr/local/lib'];

function sharedLibraries(execPath: string): string[] {
  let listing: string;
  try {
    listing = execFileSync('ldd', [execPath], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
  } catch {
    return LIBRARY_FOLDERS.filter((folder) => existsSync(folder));
  }
  // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" and "/lib64/ld-linux-x86-64.so.2 (0x…)".
  const files = new Set<string>();
  for (const line of listing.split('\n')) {
    const match = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (match) files.add(match[1]!);
  }
  return files.size > 0 ? [...files] : LIBRARY_FOLDERS.filter((folder) => existsSync(folder));
}

/**
 * Shown (read-only) to a handler granted `childProcess`, so that what it starts can run: the
 * system's programs and libraries. Not /etc, /home, /root, /var or /run: a program needing one
 * of those is given it by the host with `allowRead`.
 */
export const SYSTEM_FOLDERS: readonly string[] = ['/usr', '/bin', '/sbin', '/lib', '/lib64', '/lib32', '/libx32'];

/** Name resolution for a handler granted `network`: what the C library and Node read to look a host up. */
export const NETWORK_FILES: readonly string[] = ['/etc/resolv.conf', '/etc/hosts', '/etc/nsswitch.conf', '/etc/gai.conf', '/etc/host.conf'];

/**
 * The host's time zone as the C library and Node's ICU find it when `TZ` is not set:
 * `/etc/localtime`, a link into the zoneinfo folder whose name ICU takes for the zone's id
 * (`…/zoneinfo/Asia/Tokyo`). Without it a sandboxed child keeps time in UTC where every other
 * backend's handler keeps the host's local time. Shown read-only: one more bind (the zone's own
 * file) and the link. Left out when others may not read it: the sandbox user opens every bound
 * path, and one it cannot would make the probe, and every child, run as the host's user.
 */
export function timeZoneFiles(): readonly string[] {
  timeZoneCache ??= readableByAll(LOCAL_TIME) ? [LOCAL_TIME] : [];
  return timeZoneCache;
}

const LOCAL_TIME = '/etc/localtime';
let timeZoneCache: readonly string[] | undefined;

/** The file `p` leads to is readable by others, and every folder above it passable by them. */
function readableByAll(p: string): boolean {
  try {
    const real = realpathSync(p);
    if ((statSync(real).mode & 0o004) === 0) return false;
    for (let dir = path.dirname(real); dir !== path.dirname(dir); dir = path.dirname(dir)) {
      if ((statSync(dir).mode & 0o001) === 0) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * The bubblewrap executable: `bwrapPath` as given when it contains a slash, else the first
 * executable of that name on the host's PATH. Undefined when there is none.
 */
export function findExecutable(name: string, searchPath: string | undefined = process.env.PATH): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? path.resolve(name) : undefined;
  for (const dir of (searchPath ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** An executable file: a folder is "executable" to access(2) too (it may be entered). */
function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}
