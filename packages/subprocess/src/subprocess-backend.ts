import os from 'node:os';
import {
  BaseBackend,
  ValidationError,
  isExecutionError,
  unserializableError,
  type BackendOptions,
  type DispatchControl,
  type RunnerTask,
} from '@kb-labs/plugin-execution-core';
import { baseEnvironment, DEFAULT_BASE_ENV, handlerEnvironment } from './child-env.js';
import { ChildRunner } from './child-runner.js';
import type { CrashReason } from './crash.js';
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame } from './framing.js';
import type { ChildRunMessage } from './messages.js';
import { detectPermissionFlag, nodeFlags, profileOf, type ChildProfile, type FlagOptions, type PermissionFlag } from './permission-flags.js';
import { childEntryPath } from './runtime-paths.js';
import { SparePool } from './spare-pool.js';

/** How long shutdown waits for killed children to be reaped. */
const CLOSE_WAIT_MS = 5000;
/** How long a running execution holds back the refill of the spare it took (see #refillAfter). */
const REFILL_DELAY_MS = 100;

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
}

/** What `stats().runners` holds on this backend. */
export type SubprocessRunnerStats = {
  /** The permission flag children run with, or 'off' (`enforcePermissions: false`). */
  permissionModel: PermissionFlag | 'off' | null;
  /** Child processes alive now (running, spare or being torn down). */
  live: number;
  /** Children serving an execution now. */
  running: number;
  /** Children started so far (cold + spares). */
  spawned: number;
  /** Executions that started a child of their own. */
  cold: number;
  /** Executions served by a warm spare. */
  fromSpare: number;
  spares: { size: number; ready: number; booting: number; spawned: number; used: number; discarded: number };
  /** Executions whose child ended without a result, by `details.reason`. */
  crashed: Record<CrashReason, number>;
  /** Children killed because their execution timed out, was aborted or was cut by shutdown. */
  killed: number;
};

interface Resolved {
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
}

/**
 * Runs every execution in a fresh Node child process: its own heap, globals and process group,
 * Node's permission model limiting files, child processes and workers to what the handler
 * declared, an allow-listed environment, and a length-prefixed protocol on fd 3 that the host
 * parses as untrusted input. Whatever a child does — exit, hang, spin, flood its output, run
 * out of memory, write garbage to the protocol pipe — only its own execution fails.
 */
export class SubprocessBackend extends BaseBackend {
  readonly #o: Resolved;
  readonly #entry = childEntryPath();
  readonly #env: Record<string, string>;
  readonly #pool: SparePool;
  readonly #children = new Set<ChildRunner>();
  readonly #crashed: Record<CrashReason, number> = { exit: 0, signal: 0, oom: 0, protocol: 0, handshake: 0 };
  #cold = 0;
  #fromSpare = 0;
  #killed = 0;

  constructor(options: SubprocessBackendOptions = {}) {
    super('subprocess', options, { concurrency: os.availableParallelism() });
    this.#o = resolveOptions(options);
    if (this.#o.flags.enforce && !detectPermissionFlag()) {
      throw new ValidationError('This Node has no permission model (--permission / --experimental-permission); pass enforcePermissions: false to run children unrestricted', {
        details: { node: process.version },
      });
    }
    this.#env = baseEnvironment(this.#o.baseEnv);
    this.#pool = new SparePool(this.#o.prespawn, (profile) => this.#spawn(profile, profile.pluginRoot, true));
  }

  protected async dispatch(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    // Encode first: an input that cannot cross the boundary costs no process.
    let frame: Buffer;
    try {
      const run: ChildRunMessage = { type: 'run', task, env: handlerEnvironment(task.permissions.env) };
      frame = encodeFrame(run, this.#o.maxFrameBytes);
    } catch (error) {
      throw unserializableError('input', error);
    }

    let runner: ChildRunner | undefined;
    let spareProfile: ChildProfile | undefined;
    if (this.#pool.enabled) {
      spareProfile = profileOf(task, this.workspace?.root, this.#o.defaultMemoryMb);
      runner = this.#pool.take(spareProfile);
      runner?.claim();
      if (runner && !(await runner.ready)) runner = undefined;
      if (control.signal.aborted) {
        runner?.kill();
        throw control.signal.reason;
      }
    }
    const warm = runner !== undefined;
    if (runner) this.#fromSpare++;
    else {
      runner = this.#spawn(profileOf(task, task.workspaceDir, this.#o.defaultMemoryMb), task.workspaceDir ?? task.pluginRoot, false);
      this.#cold++;
    }
    control.setRunner(runner.pid === undefined ? {} : { pid: runner.pid });
    const running = runner.run(frame, { pluginId: task.pluginId, handlerId: task.handlerId }, control);
    if (spareProfile) this.#refillAfter(running, spareProfile);
    try {
      const data = await running;
      if (warm) this.#pool.served();
      return data;
    } catch (error) {
      if (control.signal.aborted) this.#killed++;
      else if (isExecutionError(error) && error.code === 'WORKER_CRASHED') {
        const reason = error.details.reason as CrashReason;
        if (reason in this.#crashed) this.#crashed[reason]++;
      }
      throw error;
    }
  }

  /**
   * Refill the spares once this execution is over, or `REFILL_DELAY_MS` into it, whichever
   * comes first: a Node boot takes a CPU for tens of milliseconds, and a short execution would
   * otherwise share its CPU with the spare meant for the next one.
   */
  #refillAfter(running: Promise<unknown>, profile: ChildProfile): void {
    let done = false;
    const refill = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.#pool.touch(profile);
    };
    const timer = setTimeout(refill, REFILL_DELAY_MS);
    timer.unref();
    // A spawn blocks this thread for a few ms (fork, exec): a timer turn lets the execution's
    // own tail (artifact list, workspace removal) finish and return to the caller first.
    const soon = () => setTimeout(refill, 1).unref();
    running.then(soon, soon);
  }

  #spawn(profile: ChildProfile, cwd: string, spare: boolean): ChildRunner {
    const runner = new ChildRunner({
      execPath: this.#o.execPath,
      nodeFlags: nodeFlags(profile, this.#o.flags),
      entry: this.#entry,
      cwd,
      env: this.#env,
      maxFrameBytes: this.#o.maxFrameBytes,
      handshakeTimeoutMs: this.#o.handshakeTimeoutMs,
      cancelGraceMs: this.#o.cancelGraceMs,
      killGraceMs: this.#o.killGraceMs,
      maxLogLineLength: this.#o.maxLogLineLength,
      maxOutputPerStream: this.#o.maxOutputPerStream,
      memoryMb: profile.memoryMb,
      spare,
    });
    this.#children.add(runner);
    void runner.ended.then(() => this.#children.delete(runner));
    return runner;
  }

  protected async closeRunners(): Promise<void> {
    const left = [...this.#children];
    for (const child of left) child.kill();
    // Bounded: a process stuck in an uninterruptible system call cannot be reaped by anyone,
    // and shutdown must still return.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([this.#pool.close(), ...left.map((child) => child.ended)]),
      new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS))),
    ]);
    clearTimeout(timer);
  }

  protected override runnerStats(): SubprocessRunnerStats {
    const spares = this.#pool.counts();
    return {
      permissionModel: this.#o.flags.enforce ? detectPermissionFlag() : 'off',
      live: this.#children.size,
      running: [...this.#children].filter((c) => c.running).length,
      spawned: this.#cold + spares.spawned,
      cold: this.#cold,
      fromSpare: this.#fromSpare,
      spares: { size: this.#o.prespawn, ...spares },
      crashed: { ...this.#crashed },
      killed: this.#killed,
    };
  }

  protected override runnerProblems(): string[] {
    const problem = this.#pool.problem;
    return problem ? [problem] : [];
  }
}

function resolveOptions(o: SubprocessBackendOptions): Resolved {
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
  };
  if (o.execPath !== undefined && (typeof o.execPath !== 'string' || o.execPath.length === 0)) issues.push('execPath: must be a non-empty string');
  if (issues.length) {
    throw new ValidationError(`Invalid subprocess backend options:\n${issues.map((i) => `  - ${i}`).join('\n')}`, { details: { issues } });
  }
  return resolved;
}
