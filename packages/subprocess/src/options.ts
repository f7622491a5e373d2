import { ValidationError, type BackendOptions } from '@kb-labs/plugin-execution-core';
import { DEFAULT_BASE_ENV } from './child-env.js';
import { DEFAULT_MAX_FRAME_BYTES } from './framing.js';
import type { FlagOptions } from './permission-flags.js';
import type { SandboxMode, SandboxUser } from './sandbox.js';

/** Options of the subprocess backend: the common ones plus how children are started, limited and stopped. */
export interface SubprocessBackendOptions extends BackendOptions {
  /**
   * Children kept booted and waiting (runtime loaded, no plugin code), so an execution only pays
   * for loading its handler. Each still serves one execution and is then discarded. A spare is
   * made for the permission profile of recently used handlers and may read and write the whole
   * workspace *root* rather than only its own lease directory (its flags are fixed before the
   * execution exists): see docs/backends/subprocess.md before turning it on for untrusted plugins.
   * @default 0
   */
  prespawn?: number;
  /** After a timeout, abort or shutdown: how long the handler has, after `ctx.signal` fires in the child, before SIGTERM goes to its process group. @default 250 */
  cancelGraceMs?: number;
  /** Between SIGTERM and SIGKILL of the child's process group. @default 1000 */
  killGraceMs?: number;
  /** A child that has not said `ready` within this is killed (WORKER_CRASHED, reason `handshake`). @default 10000 */
  handshakeTimeoutMs?: number;
  /**
   * Largest protocol frame either side accepts (one message: an input, a result, a platform call
   * or reply). A child sending a larger one is killed (reason `protocol`); a larger input or
   * result is a VALIDATION_ERROR. The host may buffer up to this much per child.
   * @default 268435456 (256 MiB)
   */
  maxFrameBytes?: number;
  /**
   * Host environment variables every child boots with. A handler additionally gets the
   * variables its manifest declares in `permissions.env` (and the host granted), never the rest.
   * `NODE_OPTIONS` and other variables Node reads at start-up are always left out.
   * @default ['PATH', 'SYSTEMROOT', 'TZ', 'LANG', 'LC_ALL']
   */
  baseEnv?: readonly string[];
  /**
   * Run children under Node's permission model (fs read/write, child processes, workers
   * restricted to what the handler declared). Off means no OS-level restriction at all.
   * @default true
   */
  enforcePermissions?: boolean;
  /** Extra folders every child may read (absolute), e.g. a shared dependency folder outside the plugin. @default [] */
  allowRead?: readonly string[];
  /**
   * Let a plugin read the `node_modules` folders above its own folder, where its bare imports
   * resolve when it lives inside a monorepo. Off when every plugin ships its dependencies inside its folder.
   * @default true
   */
  readDependencyFolders?: boolean;
  /** Heap limit (`--max-old-space-size`, MB) for handlers whose manifest sets no `memoryMb`. @default undefined (V8's own limit) */
  defaultMemoryMb?: number;
  /** The Node executable children run on. @default process.execPath */
  execPath?: string;
  /** Longest stdout/stderr line delivered to `onLog`; longer ones are cut. @default 16384 */
  maxLogLineLength?: number;
  /** Characters of stdout, and of stderr, delivered to `onLog` per execution; the rest is drained and dropped. @default 1000000 */
  maxOutputPerStream?: number;
  /**
   * Run every child (cold and spare) under bubblewrap: its own user, pid, network, ipc, uts and
   * cgroup namespaces, no capabilities, a file system holding only the Node runtime, the child
   * entry, the plugin folder, its dependency folders and declared reads (read-only), its
   * workspace and declared writes (read-write), a private /tmp, its own /proc and a minimal /dev;
   * the host's network only for a handler that declared and was granted `network`. Node's
   * permission model stays on inside.
   * - `'auto'`: the sandbox where it works (Linux, bubblewrap installed, namespaces allowed),
   *   otherwise children run as with `'off'`, said once with `process.emitWarning` and always
   *   in `health().isolation`.
   * - `'required'`: construction throws where it cannot work (not Linux, no bubblewrap); a failed
   *   probe makes every `execute()` fail with WORKER_CRASHED (`details.reason: 'sandbox'`) and
   *   `health()` not ok.
   * - `'off'`: Node's permission model alone (docs/backends/subprocess.md: what it leaves open).
   * @default 'auto'
   */
  sandbox?: SandboxMode;
  /** The bubblewrap executable: a name looked up on PATH, or a path. @default 'bwrap' */
  bwrapPath?: string;
  /**
   * On a host running as root, the unprivileged user and group sandboxed children run as (each
   * execution's workspace, and the plugin's declared write folders, are handed to it), so that
   * a kernel bug reachable from a user namespace does not start from root. `false` keeps root
   * (still without capabilities, inside a user namespace). Ignored on a host not running as root.
   * @default { uid: 65534, gid: 65534 } (nobody/nogroup)
   */
  sandboxUser?: SandboxUser | false;
}

export interface Resolved {
  prespawn: number;
  cancelGraceMs: number;
  killGraceMs: number;
  handshakeTimeoutMs: number;
  maxFrameBytes: number;
  baseEnv: readonly string[];
  flags: FlagOptions;
  defaultMemoryMb: number | undefined;
  execPath: string;
  maxLogLineLength: number;
  maxOutputPerStream: number;
  sandbox: SandboxMode;
  bwrapPath: string;
  /** Who sandboxed children run as; undefined keeps the host's user. */
  sandboxUser: SandboxUser | undefined;
}

const SANDBOX_MODES: readonly SandboxMode[] = ['auto', 'required', 'off'];
const NOBODY: SandboxUser = { uid: 65534, gid: 65534 };

export function resolveOptions(o: SubprocessBackendOptions): Resolved {
  const issues: string[] = [];
  const int = (name: keyof SubprocessBackendOptions, fallback: number, min: number, max = 2_147_483_647): number => {
    const value = o[name];
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      issues.push(`${name}: must be an integer from ${min} to ${max}, got ${String(value)}`);
      return fallback;
    }
    return value;
  };
  const strings = (name: 'baseEnv' | 'allowRead', fallback: readonly string[]): readonly string[] => {
    const value = o[name];
    if (value === undefined) return fallback;
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v.length > 0 && !v.includes('\0'))) {
      issues.push(`${name}: must be an array of non-empty strings`);
      return fallback;
    }
    return value;
  };
  const bool = (name: 'enforcePermissions' | 'readDependencyFolders', fallback: boolean): boolean => {
    const value = o[name];
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') {
      issues.push(`${name}: must be a boolean`);
      return fallback;
    }
    return value;
  };
  const resolved: Resolved = {
    prespawn: int('prespawn', 0, 0, 64),
    cancelGraceMs: int('cancelGraceMs', 250, 0, 60_000),
    killGraceMs: int('killGraceMs', 1000, 0, 60_000),
    handshakeTimeoutMs: int('handshakeTimeoutMs', 10_000, 1),
    maxFrameBytes: int('maxFrameBytes', DEFAULT_MAX_FRAME_BYTES, 1024, 0x7fff_ffff),
    baseEnv: strings('baseEnv', DEFAULT_BASE_ENV),
    flags: {
      enforce: bool('enforcePermissions', true),
      extraReadPaths: strings('allowRead', []),
      readAncestorNodeModules: bool('readDependencyFolders', true),
    },
    defaultMemoryMb: o.defaultMemoryMb === undefined ? undefined : int('defaultMemoryMb', 0, 8, 1_048_576),
    execPath: typeof o.execPath === 'string' && o.execPath.length > 0 ? o.execPath : process.execPath,
    maxLogLineLength: int('maxLogLineLength', 16_384, 80),
    maxOutputPerStream: int('maxOutputPerStream', 1_000_000, 0),
    sandbox: SANDBOX_MODES.includes(o.sandbox as SandboxMode) ? (o.sandbox as SandboxMode) : 'auto',
    bwrapPath: typeof o.bwrapPath === 'string' && o.bwrapPath.length > 0 ? o.bwrapPath : 'bwrap',
    // Only root can start a child as another user; a host that is not root needs no drop.
    sandboxUser: process.getuid?.() === 0 && o.sandboxUser !== false ? (isUser(o.sandboxUser) ? o.sandboxUser : NOBODY) : undefined,
  };
  if (o.execPath !== undefined && (typeof o.execPath !== 'string' || o.execPath.length === 0)) issues.push('execPath: must be a non-empty string');
  if (o.sandbox !== undefined && !SANDBOX_MODES.includes(o.sandbox)) issues.push(`sandbox: must be one of 'auto', 'required', 'off', got ${JSON.stringify(o.sandbox)}`);
  if (o.bwrapPath !== undefined && (typeof o.bwrapPath !== 'string' || o.bwrapPath.length === 0)) issues.push('bwrapPath: must be a non-empty string');
  if (o.sandboxUser !== undefined && o.sandboxUser !== false && !isUser(o.sandboxUser)) {
    issues.push('sandboxUser: must be { uid, gid } with integers from 1 to 4294967294, or false');
  }
  if (issues.length) {
    throw new ValidationError(`Invalid subprocess backend options:\n${issues.map((i) => `  - ${i}`).join('\n')}`, { details: { issues } });
  }
  return resolved;
}

function isUser(value: unknown): value is SandboxUser {
  const id = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 4_294_967_294;
  return typeof value === 'object' && value !== null && id((value as SandboxUser).uid) && id((value as SandboxUser).gid);
}
