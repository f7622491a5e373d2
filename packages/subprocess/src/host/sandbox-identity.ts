import type { SandboxView } from './sandbox-view.js';

// What a sandboxed child's system says of its user, its home and `localhost`, where the host
// shows none of its own files: without them `os.homedir()` and `os.userInfo()` throw (no
// /etc/passwd, no HOME) and `localhost` does not resolve (no /etc/hosts), so a library that
// computes a default path from the home folder when it is imported fails to load there, where
// it loads on every other backend. Each file is bubblewrap's `--ro-bind-data`: read from a pipe
// when the child starts (one descriptor each, nothing written to the host's disk) and shown
// read-only. Nothing in them is the host's: not its user names, its home or its host names.

/** The home of every sandboxed child: its private /tmp, a tmpfs it may write, gone with it. */
export const SANDBOX_HOME = '/tmp';

/** A file shown to a sandboxed child, at `path`, with `data` as its content. */
export interface SandboxFile {
  path: string;
  data: Buffer;
}

/** The sandbox's own `lo` answers for `localhost`: it has nothing else to name. */
const HOSTS = Buffer.from('127.0.0.1\tlocalhost\n::1\tlocalhost\n');

/** The conventional names of the uids a sandboxed child runs as on most hosts; any other is "sandbox", as its hostname. */
const USER_NAMES = new Map([
  [0, 'root'],
  [65534, 'nobody'],
]);

const passwdCache = new Map<string, Buffer>();

/**
 * The files a child running as `uid`/`gid` is given, leaving out any that `view` shows already
 * (the host's /etc/hosts for a handler granted `network`, an `allowRead` of /etc or of `/`): the
 * host chose to show its own there, and a file cannot be bound where a read-only folder has none.
 */
export function identityFiles(view: SandboxView, uid: number, gid: number): SandboxFile[] {
  const files: SandboxFile[] = [];
  if (!view.holds('/etc/passwd')) files.push({ path: '/etc/passwd', data: passwd(uid, gid) });
  if (!view.holds('/etc/hosts')) files.push({ path: '/etc/hosts', data: HOSTS });
  return files;
}

/** bubblewrap's arguments for `files`, read from descriptors `firstFd`, `firstFd + 1`… (which it closes once read). */
export function identityArgs(files: readonly SandboxFile[], firstFd: number): string[] {
  return files.flatMap((file, index) => ['--ro-bind-data', String(firstFd + index), file.path]);
}

/** One line: the child's own user, its home the sandbox's. Made once per uid and gid. */
function passwd(uid: number, gid: number): Buffer {
  const key = `${uid}:${gid}`;
  let data = passwdCache.get(key);
  if (!data) {
    const name = USER_NAMES.get(uid) ?? 'sandbox';
    data = Buffer.from(`${name}:x:${uid}:${gid}:${name}:${SANDBOX_HOME}:/bin/sh\n`);
    passwdCache.set(key, data);
  }
  return data;
}
