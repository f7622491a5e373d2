import os from 'node:os';
import { HandlerError, ValidationError, WorkerCrashedError, isExecutionError, type ExecuteOptions, type ExecutionRequest, type ExecutionResult, type IsolationReport, type BackendStats, type PluginSource, type RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { BaseBackend, clearTimeout, hostPermissionProblem, recordRunnerCrash, recordRunnerStart, refusedByHostPermissions, refuseTaskWhatV8Loses, setImmediate, setTimeout, taskUnserializableError, type DispatchControl, type RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';
import { baseEnvironment, handlerEnvironment, withSandboxHome } from './child-env.js';
import { ChildRunner } from './child-runner.js';
import { sandboxRefusedError, type ChildCrashReason } from './crash.js';
import { FrameTooLargeError, encodeFrame } from '../framing.js';
import { frameTooLargeError } from './frame-too-large.js';
import { folderGoneError } from './folder-gone.js';
import { inheritedDescriptors } from './inherited-fds.js';
import type { ChildRunMessage } from '../messages.js';
import { resolveOptions, subprocessOptionsSchema, type Resolved, type SubprocessBackendOptions } from './options.js';
import { childNode } from './child-node.js';
import { declaredFolders, detectPermissionFlag, fsGrants, nodeFlags, profileKey, profileOf, type ChildProfile, type FsGrants, type PermissionFlag } from './permission-flags.js';
import { hiddenPackageNote } from './hidden-dependencies.js';
import { childEntryPath } from './runtime-paths.js';
import { Sandbox } from './sandbox.js';
import { hiddenFromSandbox } from './hidden-from-sandbox.js';
import { noNetworkNote } from './network-note.js';
import { SparePool } from './spare-pool.js';
import { StartFailures } from './start-failures.js';
import { refuseUngrantableOptions, ungrantablePluginError, ungrantablePluginProblems } from './ungrantable-paths.js';

export type { SubprocessBackendOptions } from './options.js';

/** The grants of a child that neither Node's permission model nor the sandbox restricts. */
const NO_GRANTS: FsGrants = { read: [], write: [] };
/** How long shutdown waits for killed children to be reaped. */
const CLOSE_WAIT_MS = 5000;
/** How long a running execution holds back the refill of the spare it took (see #refillAfter). */
const REFILL_DELAY_MS = 100;

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
  /** Whether children run under bubblewrap now (`health().isolation` says why). */
  sandboxed: boolean;
  /** Executions whose child ended without a result, by `details.reason`. */
  crashed: Record<ChildCrashReason, number>;
  /** Children killed because their execution timed out, was aborted or was cut by shutdown. */
  killed: number;
};

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
  /** The same for a sandboxed child: a configured HOME is the sandbox's own (child-env.ts). */
  readonly #sandboxEnv: Record<string, string>;
  readonly #pool: SparePool;
  readonly #children = new Set<ChildRunner>();
  /** Spare refills waiting for their execution to be over, by execution id. */
  readonly #refills = new Map<string, () => void>();
  readonly #crashed: Record<ChildCrashReason, number> = { exit: 0, signal: 0, oom: 0, 'uncaught-exception': 0, 'unhandled-rejection': 0, protocol: 0, 'start-failed': 0, sandbox: 0 };
  readonly #sandbox: Sandbox;
  readonly #startFailures = new StartFailures();
  #cold = 0;
  #fromSpare = 0;
  #killed = 0;

  constructor(options: SubprocessBackendOptions = {}) {
    super('subprocess', options, { concurrency: os.availableParallelism(), optionsSchema: subprocessOptionsSchema() });
    try {
      this.#o = resolveOptions(options);
      if (this.#o.flags.enforce && !detectPermissionFlag(this.#o.flags.accepted)) {
        const node = childNode(this.#o.execPath).version;
        throw new ValidationError(`The children's Node (${node}) has no permission model (--permission / --experimental-permission); pass enforcePermissions: false to run children unrestricted`, {
          details: { node },
        });
      }
      // Paths no child could be granted: said now, naming the option, not by every execution.
      refuseUngrantableOptions(this.#o.flags.enforce, { workspaceRoot: this.workspace?.root, allowRead: this.#o.flags.extraReadPaths, plugins: options.plugins ?? [] });
      this.#sandbox = new Sandbox({ mode: this.#o.sandbox, bwrapPath: this.#o.bwrapPath, user: this.#o.sandboxUser, execPath: this.#o.execPath, tmpMb: this.#o.sandboxTmpMb });
      this.#env = baseEnvironment(this.#o.baseEnv);
      this.#sandboxEnv = withSandboxHome(this.#env);
      this.#pool = new SparePool(this.#o.prespawn, (profile) => this.#spawn(profile, profile.pluginRoot, true));
    } catch (error) {
      this.constructionFailed();
      throw error;
    }
  }

  /** A plugin whose folder no child could be granted is refused here, its folder and character named (see ungrantable-paths.ts). */
  override registerPlugin(source: PluginSource): Promise<RegisteredPlugin> {
    const refused = ungrantablePluginError(this.#o.flags.enforce, source);
    return refused ? Promise.reject(refused) : super.registerPlugin(source);
  }

  protected async dispatch(task: RunnerTask, control: DispatchControl): Promise<unknown> {
    // Encode first: an input that cannot cross the boundary costs no process.
    const run: ChildRunMessage = { type: 'run', task, env: handlerEnvironment(task.permissions.env) };
    let frame = this.#encode(run);

    // Known after the first probe: no execution waits for it again.
    const sandbox = this.#sandbox.state ?? (await this.#sandbox.ready());
    // Stopped while it waited for that first probe: no child is started for it.
    if (control.stopReason) throw control.stopReason;
    const refusal = this.#sandbox.refusal(sandbox);
    if (refusal) throw sandboxRefusedError(refusal, task, !sandbox.active && sandbox.transient === true);
    // A granted HOME is the host's path, which the sandbox does not show writable, if at all.
    if (sandbox.active && run.env.HOME !== undefined) frame = this.#encode({ ...run, env: withSandboxHome(run.env) });
    // Before a spare is taken or refilled for it: a declared folder leading outside the plugin's.
    declaredFolders(profileOf(task, undefined, undefined));
    const hidden = this.#hiddenFromSandbox(task.pluginRoot);
    if (hidden) throw new ValidationError(hidden.message, { details: { path: hidden.path, reason: 'hidden-by-sandbox' } });

    const spareProfile = this.#pool.enabled ? profileOf(task, this.workspace?.root, this.#o.defaultMemoryMb) : undefined;
    let runner = spareProfile ? await this.#takeSpare(spareProfile, task, control) : undefined;
    const warm = runner !== undefined;
    if (runner) {
      this.#fromSpare++;
    } else {
      runner = this.#spawnCold(task);
      this.#cold++;
    }
    if (runner.pid !== undefined) control.setRunner({ id: `pid:${runner.pid}`, pid: runner.pid });
    const running = runner.run(frame, { pluginId: task.pluginId, handlerId: task.handlerId, timeoutMs: task.timeoutMs }, control);
    if (spareProfile) this.#refillAfter(task, spareProfile);
    try {
      return await running;
    } catch (error) {
      throw this.#counted(this.#withSandboxNote(error, task), task, control);
    } finally {
      // A spare that booted served, whatever its handler did (a HANDLER_ERROR, a TIMEOUT): spares
      // are not failing to boot. Only a succeeding one counted before, so with a plugin that fails
      // the deaths of idle spares added up over hours and switched prespawn off.
      if (warm && runner.handshaken) this.#pool.served();
      else if (runner.handshaken) this.#pool.childStarted();
    }
  }

  /** A booted spare of `profile` for `task`, or undefined; a spare taken for it is killed if the execution stops, or the spare cannot have its lease, meanwhile. */
  async #takeSpare(profile: ChildProfile, task: RunnerTask, control: DispatchControl): Promise<ChildRunner | undefined> {
    const taken = this.#pool.take(profile);
    taken?.claim();
    const runner = taken && (await this.#pool.bootedOrStopped(taken, control)) ? taken : undefined;
    if (control.stopReason) {
      // Stopped while its spare booted: the spare, taken for it, is killed with it (counted so)
      // now, not once booted (the execution's slot and workspace wait for it), and replaced.
      if (taken?.available) {
        taken.kill();
        this.#killed++;
      }
      if (taken) this.#refill(task, profile);
      throw control.stopReason;
    }
    if (!runner || !task.workspaceDir) return runner;
    try {
      // A spare's view holds the workspace root; the lease it now serves becomes its user's.
      this.#sandbox.handOver(task.workspaceDir, runner.user);
    } catch (error) {
      // The lease gone, a chown refused: out of the pool, the spare would wait for a run for the host's life; it is replaced.
      runner.kill();
      this.#refill(task, profile);
      throw error;
    }
    return runner;
  }

  /** A HANDLER_ERROR the sandbox explains (a package it hides from the child: a link out of a node_modules folder; the network a handler did not declare), said so. */
  #withSandboxNote(error: unknown, task: RunnerTask): unknown {
    if (!this.#sandbox.state?.active || !isExecutionError(error) || error.code !== 'HANDLER_ERROR') return error;
    const shown = fsGrants(profileOf(task, this.workspace?.root, this.#o.defaultMemoryMb), this.#o.flags).read;
    const note = hiddenPackageNote(task.pluginRoot, error.message, shown) || noNetworkNote(error, task.permissions);
    return note ? new HandlerError(`${error.message}${note}`, { details: error.details, cause: error.cause }) : error;
  }

  /**
   * Count how the child ended: killed for a stop the host made (time limit, abort, shutdown), or
   * crashed — core's own WORKER_CRASHED stop (a protocol breach it saw) included. What to throw.
   */
  #counted(error: unknown, task: RunnerTask, control: DispatchControl): unknown {
    const stop = control.stopReason;
    const crash = stop ? (stop.code === 'WORKER_CRASHED' ? stop : undefined) : isExecutionError(error) && error.code === 'WORKER_CRASHED' ? error : undefined;
    if (!crash) {
      if (stop) this.#killed++;
      return error;
    }
    const gone = !stop && folderGoneError(task, crash);
    if (gone) return gone;
    this.#countCrash(crash.details.reason as ChildCrashReason);
    if (crash.details.reason === 'start-failed' || crash.details.reason === 'sandbox') this.#startFailures.failed(crash);
    return error;
  }

  #countCrash(reason: ChildCrashReason): void {
    if (reason in this.#crashed) this.#crashed[reason]++;
    recordRunnerCrash('subprocess', reason);
  }

  /**
   * Runs the execution, then refills the spare it took once the caller has its result: a spawn
   * blocks this thread for several ms (fork, exec, the sandbox's arguments), and doing it while
   * the execution's tail (artifact list, workspace removal) still waits for its turn would put
   * that on every warm execution's latency.
   */
  override async execute<T = unknown>(request: ExecutionRequest, options?: ExecuteOptions): Promise<ExecutionResult<T>> {
    const result = await super.execute<T>(request, options);
    const refill = this.#refills.get(result.meta.executionId);
    // After the caller's continuation, which is a microtask of this promise.
    if (refill) setImmediate(refill);
    return result;
  }

  /**
   * Refill the spares after the execution that took one (see execute()), or `REFILL_DELAY_MS`
   * into it, whichever comes first: a Node boot takes a CPU for tens of milliseconds, and a short
   * execution would otherwise share its CPU with the spare meant for the next one.
   */
  #refillAfter(task: RunnerTask, profile: ChildProfile): void {
    const { executionId } = task;
    const refill = () => {
      if (!this.#refills.delete(executionId)) return;
      clearTimeout(timer);
      this.#refill(task, profile);
    };
    const timer = setTimeout(refill, REFILL_DELAY_MS);
    timer.unref();
    this.#refills.set(executionId, refill);
  }

  /**
   * Boot spares of `profile` again; not for a plugin unregistered meanwhile (its spares killed), nor
   * for a handler a reload gave another profile meanwhile: one booted for it now would wait for ever.
   */
  #refill({ pluginId, handlerId }: RunnerTask, profile: ChildProfile): void {
    const plugin = this.registry.get(pluginId);
    if (plugin?.root !== profile.pluginRoot || !Object.hasOwn(plugin.manifest.handlers, handlerId)) return;
    if (profileKey(this.#profileOf(plugin.id, handlerId)) === profileKey(profile)) this.#pool.touch(profile, pluginId);
  }

  /** The profile the spares of a registered handler have now. */
  #profileOf(pluginId: string, handlerId: string): ChildProfile {
    return profileOf(this.registry.resolve(pluginId, handlerId), this.workspace?.root, this.#o.defaultMemoryMb);
  }

  /** A child for `task` now; one the host's own permissions forbid (Node's permission model) is WORKER_CRASHED start-failed, saying so. */
  #spawnCold(task: RunnerTask): ChildRunner {
    try {
      return this.#spawn(profileOf(task, task.workspaceDir, this.#o.defaultMemoryMb), task.workspaceDir ?? task.pluginRoot, false);
    } catch (error) {
      const refused = refusedByHostPermissions(error, 'child');
      if (!refused) throw error instanceof WorkerCrashedError ? this.#startFailed(error) : error;
      const { pluginId, handlerId } = task;
      throw this.#startFailed(
        new WorkerCrashedError(`The subprocess backend cannot run handler "${handlerId}" of plugin "${pluginId}": ${refused}`, {
          details: { reason: 'start-failed', message: refused, pluginId, handlerId },
          cause: error,
        }),
      );
    }
  }

  /** A child that could not be started at all (spawnedWithoutPipes, the host's permissions): counted as one that failed to. */
  #startFailed(error: WorkerCrashedError): WorkerCrashedError {
    this.#countCrash('start-failed');
    this.#startFailures.failed(error);
    return error;
  }

  #spawn(profile: ChildProfile, cwd: string, spare: boolean): ChildRunner {
    const sandboxed = this.#sandbox.state?.active === true;
    this.#sandbox.createWriteFolders(profile);
    // argv of the child entry: frame limit, descriptors to close, whether bubblewrap started it,
    // whether the host maps stack traces to sources (a child starts with none of its flags).
    const childArgs = (firstFreeFd: number) => [
      String(this.#o.maxFrameBytes),
      inheritedDescriptors(firstFreeFd).join(','),
      sandboxed ? 'sandboxed' : 'plain',
      process.sourceMapsEnabled ? 'source-maps' : 'no-source-maps',
    ];
    // What the child may read and write, named once for both layers: Node's flags and the sandbox's view.
    const grants = this.#o.flags.enforce || sandboxed ? fsGrants(profile, this.#o.flags) : NO_GRANTS;
    const node = { flags: nodeFlags(profile, this.#o.flags, grants), entry: this.#entry, args: childArgs };
    const runner = new ChildRunner({
      launch: this.#sandbox.launch(profile, grants, node, cwd, spare),
      cwd: sandboxed ? '/' : cwd,
      env: sandboxed ? this.#sandboxEnv : this.#env,
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
    // A child that starts ends the start-failure streak: an execution's, or a spare that may serve none for a while.
    void runner.ready.then((ready) => ready && this.#startFailures.started());
    recordRunnerStart('subprocess');
    void runner.ended.then(() => this.#children.delete(runner));
    return runner;
  }

  /** The run message as a frame, or the VALIDATION_ERROR saying why it cannot be one. */
  #encode(run: ChildRunMessage): Buffer {
    // What v8's serialiser would write as {} (a CryptoKey on Node 22): refused, as the input a handler would not get.
    refuseTaskWhatV8Loses(run.task);
    try {
      return encodeFrame(run, this.#o.maxFrameBytes);
    } catch (error) {
      if (error instanceof FrameTooLargeError) throw frameTooLargeError(error, run);
      throw taskUnserializableError(error, run.task);
    }
  }

  /** A subprocess child never keeps a plugin, but spares booted for one would wait for it for ever. */
  protected override pluginUnregistered(plugin: RegisteredPlugin): void {
    this.#pool.forget(plugin.id, plugin.root);
  }

  /** So would spares booted for a profile its handlers no longer have (a heap limit or a grant changed by the reload). */
  protected override pluginReloaded(plugin: RegisteredPlugin): void {
    this.#pool.forget(plugin.id, plugin.root, new Set(Object.keys(plugin.manifest.handlers).map((handlerId) => profileKey(this.#profileOf(plugin.id, handlerId)))));
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

  /** Waits for the sandbox probe (once, at most its few ms) before the figures: `runners.sandboxed` said false until the first execution. */
  override async stats(): Promise<BackendStats> {
    await this.#sandbox.ready().catch(() => undefined);
    return super.stats();
  }

  protected override runnerStats(): SubprocessRunnerStats {
    const spares = this.#pool.counts();
    return {
      permissionModel: this.#o.flags.enforce ? detectPermissionFlag(this.#o.flags.accepted) : 'off',
      sandboxed: this.#sandbox.state?.active === true,
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

  /** A workspace root or plugin folder the sandbox replaces with its own (hidden-from-sandbox.ts), when children run sandboxed. */
  #hiddenFromSandbox(pluginRoot?: string): { message: string; path: string } | undefined {
    return this.#sandbox.state?.active === true ? hiddenFromSandbox(this.workspace?.root, pluginRoot) : undefined;
  }

  protected override async runnerProblems(): Promise<string[]> {
    const problems: string[] = [];
    const refused = hostPermissionProblem('child');
    if (refused) problems.push(refused);
    const state = await this.#sandbox.ready();
    const refusal = this.#sandbox.refusal(state);
    if (refusal) problems.push(!state.active && state.transient ? `the sandbox cannot be set up now: ${refusal}` : `sandbox: 'required' but unavailable: ${refusal}`);
    for (const pluginRoot of [undefined, ...this.registry.list().map((plugin) => plugin.root)]) {
      const hidden = this.#hiddenFromSandbox(pluginRoot);
      if (hidden && !problems.includes(hidden.message)) problems.push(hidden.message);
    }
    problems.push(...ungrantablePluginProblems(this.#o.flags.enforce, this.registry.list()));
    if (this.#pool.problem) problems.push(this.#pool.problem);
    if (this.#startFailures.problem) problems.push(this.#startFailures.problem);
    return problems;
  }

  protected async isolation(): Promise<IsolationReport> {
    await this.#sandbox.ready();
    return this.#sandbox.report(this.#o.flags.enforce);
  }
}
