import { sandboxFilter } from './seccomp-filter.js';

// What every sandboxed child gets whatever it was granted: namespaces, privileges, mounts of its
// own, and the system-call filter. Its view of the host's files is sandbox-view.ts's.

/**
 * The system-call filters for this machine (seccomp-filter.ts), read by bubblewrap from fd 0,
 * which it then closes: a child granted the network may make Unix sockets, one not may not.
 */
export const SET_ID_FILTER = sandboxFilter(false);
export const NETWORK_FILTER = sandboxFilter(true);
const SECCOMP_ARGS = SET_ID_FILTER ? ['--seccomp', '0'] : [];

/** A child's own /dev/shm, as a container's: 64 MiB (each writable tmpfs would take up to half the RAM). */
export const SHM_MB = 64;
const MB = 1024 * 1024;
/**
 * Namespaces and privileges: its own of everything (the network too unless granted), no
 * capabilities (a root host's child would otherwise remount its read-only folders), no user
 * namespaces inside, a session of its own (no terminal to inject input into), and gone when the
 * host is. Node runs as pid 2 under bubblewrap's init, which ends when Node does and takes every
 * process of the namespace with it; as pid 2 Node keeps the default action of SIGTERM (an init
 * ignores signals it has no handler for, so a busy loop would outlast it). Its /tmp is a tmpfs
 * of `tmpMb` (sandboxTmpMb): unbounded, one would take up to half the machine's RAM.
 */
export function isolationArgs(network: boolean, tmpMb: number): string[] {
  return [
    '--unshare-all',
    '--unshare-user',
    ...(network ? ['--share-net'] : []),
    '--disable-userns',
    '--cap-drop',
    'ALL',
    '--new-session',
    '--die-with-parent',
    '--hostname',
    'sandbox',
    '--size',
    String(tmpMb * MB),
    '--tmpfs',
    '/tmp',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    // /dev read-only, but for its own /dev/shm.
    '--size',
    String(SHM_MB * MB),
    '--tmpfs',
    '/dev/shm',
    '--remount-ro',
    '/dev',
    ...SECCOMP_ARGS,
  ];
}
