import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { type BackendOptions } from '@kb-labs/plugin-execution-core';
import { backendOptionsSchema, lazySchema, option, outputLimits } from '@kb-labs/plugin-execution-core/backend-kit';
import { DEFAULT_BASE_ENV } from './child-env.js';
import { childNode } from './child-node.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../framing.js';
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
  prespawn?: number | undefined;
  /**
   * After the caller's abort: how long the handler has, after `ctx.signal` fires in the child,
   * before SIGTERM goes to its process group (a timeout or a shutdown gets none: the handler has
   * had its time). The same option and rule on every backend that can stop a runner. @default 250
   */
  cancelGraceMs?: number | undefined;
  /** Between SIGTERM and SIGKILL of the child's process group. @default 1000 */
  killGraceMs?: number | undefined;
  /** A child that has not said `ready` within this is killed (WORKER_CRASHED, reason `start-failed`). @default 10000 */
  handshakeTimeoutMs?: number | undefined;
  /**
   * Largest protocol frame either side accepts (one message: an input, a result, a platform call
   * or reply). A child sending a larger one is killed (reason `protocol`); a larger input or
   * result is a VALIDATION_ERROR. The host may buffer up to this much per child.
   * @default 268435456 (256 MiB)
   */
  maxFrameBytes?: number | undefined;
  /**
   * Host environment variables every child boots with. A handler additionally gets the
   * variables its manifest declares in `permissions.env` (and the host granted), never the rest.
   * `NODE_OPTIONS` and other variables Node reads at start-up are always left out.
   * @default ['PATH', 'SYSTEMROOT', 'TZ', 'LANG', 'LC_ALL']
   */
  baseEnv?: readonly string[] | undefined;
  /**
   * Run children under Node's permission model (fs read/write, child processes, workers
   * restricted to what the handler declared). Off means no OS-level restriction at all.
   * @default true
   */
  enforcePermissions?: boolean | undefined;
  /** Extra folders every child may read (absolute), e.g. a shared dependency folder outside the plugin. @default [] */
  allowRead?: readonly string[] | undefined;
  /**
   * Let a plugin read the `node_modules` folders above its own folder, where its bare imports
   * resolve when it lives inside a monorepo. Off when every plugin ships its dependencies inside its folder.
   * @default true
   */
  readDependencyFolders?: boolean | undefined;
  /** Heap limit (`--max-old-space-size`, MB) for handlers whose manifest sets no `memoryMb`. @default undefined (V8's own limit) */
  defaultMemoryMb?: number | undefined;
  /** The Node executable children run on; a relative path is taken from the working directory when the backend is created. @default process.execPath */
  execPath?: string | undefined;
  /** Longest stdout/stderr line delivered to `onLog`; longer ones are cut. @default 16384 */
  maxLogLineLength?: number | undefined;
  /** Characters of stdout, and of stderr, delivered to `onLog` per execution; the rest is drained and dropped. @default 1000000 */
  maxOutputPerStream?: number | undefined;
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
  sandbox?: SandboxMode | undefined;
  /**
   * The bubblewrap executable: a name looked up on PATH, or a path. Given and not found, the
   * backend is not made (ValidationError), whatever `sandbox` is but 'off'. @default 'bwrap'
   */
  bwrapPath?: string | undefined;
  /**
   * On a host running as root, the unprivileged user and group sandboxed children run as (each
   * execution's workspace, and the plugin's declared write folders, are handed to it), so that
   * a kernel bug reachable from a user namespace does not start from root. `false` keeps root
   * (still without capabilities, inside a user namespace). Ignored on a host not running as root.
   * @default { uid: 65534, gid: 65534 } (nobody/nogroup)
   */
  sandboxUser?: SandboxUser | false | undefined;
  /**
   * Size of a sandboxed child's private /tmp (MiB): a tmpfs, so what is written there is the
   * machine's memory, outside the heap limit. Past it, a write fails with ENOSPC. A child's
   * /dev/shm is 64 MiB. Ignored when children do not run sandboxed.
   * @default 256
   */
  sandboxTmpMb?: number | undefined;
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
  /** As given; undefined: "bwrap" on PATH. */
  bwrapPath: string | undefined;
  /** Who sandboxed children run as; undefined keeps the host's user. */
  sandboxUser: SandboxUser | undefined;
  sandboxTmpMb: number;
}

const NOBODY: SandboxUser = { uid: 65534, gid: 65534 };
/**
 * Node itself writes nothing to /tmp; a plugin's temporary files, or a tool's cache under its
 * home (/tmp), get as much as one protocol frame at its default (maxFrameBytes): a handler can
 * spool its largest input or result there. Memory only as it is used.
 */
const DEFAULT_SANDBOX_TMP_MB = 256;

/** Checked up front: a wrong execPath would otherwise show first as a sandbox probe that fails, blaming bubblewrap. */
function isExecutableFile(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}
/** The whole option schema of this backend: the base class validates with it, unknown options refused. */
export const subprocessOptionsSchema = lazySchema((z) => {
  const id = option.int(1, 4_294_967_294);
  return backendOptionsSchema().extend({
    prespawn: option.int(0, 64).optional(),
    cancelGraceMs: option.int(0).optional(),
    killGraceMs: option.int(0, 60_000).optional(),
    handshakeTimeoutMs: option.int(1).optional(),
    maxFrameBytes: option.int(1024, 0x7fff_ffff).optional(),
    baseEnv: option.texts().optional(),
    enforcePermissions: option.boolean().optional(),
    // Absolute: a relative one would follow the host's working directory at each child's start.
    allowRead: option
      .texts()
      .refine((paths) => paths.every((p) => path.isAbsolute(p)), {
        error: (issue) => `must be absolute paths, got ${JSON.stringify((issue.input as string[]).find((p) => !path.isAbsolute(p)))}`,
      })
      .optional(),
    readDependencyFolders: option.boolean().optional(),
    defaultMemoryMb: option.int(8, 1_048_576).optional(),
    execPath: option
      .text()
      .refine(isExecutableFile, { error: 'must be the path of an executable file (the Node binary children run on)' })
      .optional(),
    ...outputLimits.schema(),
    sandbox: option.oneOf(['auto', 'required', 'off']).optional(),
    bwrapPath: option.text().optional(),
    sandboxUser: z
      .union([z.object({ uid: id, gid: id }).strict(), z.literal(false)], { error: 'must be { uid, gid } with integers from 1 to 4294967294, or false' })
      .optional(),
    // Up to 1 TiB: more is no bound, and a typo (bytes for MiB) should be caught.
    sandboxTmpMb: option.int(1, 1_048_576).optional(),
  });
});

/** Defaults filled in; `o` has passed subprocessOptionsSchema() (the base class's constructor checks it first). */
export function resolveOptions(o: SubprocessBackendOptions): Resolved {
  // Checked from the host's working directory: a child would otherwise look it up from its own (the workspace).
  const execPath = o.execPath === undefined ? process.execPath : path.resolve(o.execPath);
  return {
    prespawn: o.prespawn ?? 0,
    cancelGraceMs: o.cancelGraceMs ?? 250,
    killGraceMs: o.killGraceMs ?? 1000,
    handshakeTimeoutMs: o.handshakeTimeoutMs ?? 10_000,
    maxFrameBytes: o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    baseEnv: o.baseEnv ?? DEFAULT_BASE_ENV,
    flags: {
      enforce: o.enforcePermissions ?? true,
      accepted: childNode(execPath).flags,
      extraReadPaths: o.allowRead ?? [],
      readAncestorNodeModules: o.readDependencyFolders ?? true,
    },
    defaultMemoryMb: o.defaultMemoryMb,
    execPath,
    ...outputLimits.resolve(o),
    sandbox: o.sandbox ?? 'auto',
    bwrapPath: o.bwrapPath,
    // Only root can start a child as another user; a host that is not root needs no drop.
    sandboxUser: process.getuid?.() === 0 && o.sandboxUser !== false ? (o.sandboxUser ?? NOBODY) : undefined,
    sandboxTmpMb: o.sandboxTmpMb ?? DEFAULT_SANDBOX_TMP_MB,
  };
}
