import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { PermissionDeniedError, ValidationError, type IsolationReport } from '@kb-labs/plugin-execution-core';
import { hostMayAccess, passingShortage, permissionModelFlag, refusedByHostPermissions } from '@kb-labs/plugin-execution-core/backend-kit';
import { warnOfHiddenDependencies } from './hidden-dependencies.js';
import { declaredFolders, type ChildProfile, type FsGrants } from './permission-flags.js';
import { handOverFolder, makeFolder } from './sandbox-folders.js';
import { withRealPath } from './runtime-paths.js';
import { execPathProblem, findExecutable, NETWORK_FILES, runtimeFiles, SYSTEM_FOLDERS, timeZoneFiles } from './sandbox-runtime.js';
import { NETWORK_FILTER, SET_ID_FILTER, SHM_MB, isolationArgs } from './sandbox-isolation.js';
import { identityArgs, identityFiles } from './sandbox-identity.js';
import { unusableBy } from './sandbox-user.js';
import { SandboxView } from './sandbox-view.js';

/** `'auto'`: bubblewrap where it works, else run as without it and say so. `'required'`: never without. `'off'`: never. */
export type SandboxMode = 'auto' | 'required' | 'off';

/** The unprivileged user sandboxed children run as on a host running as root. */
export interface SandboxUser {
  uid: number;
  gid: number;
}

export interface SandboxConfig {
  mode: SandboxMode;
  /** A name looked up on PATH, or a path; undefined: "bwrap" on PATH. */
  bwrapPath: string | undefined;
  /** Who children run as when the host is root; undefined keeps the host's user. */
  user: SandboxUser | undefined;
  execPath: string;
  /** Size of each child's private /tmp, MiB (sandboxTmpMb). */
  tmpMb: number;
}

/** What is in force: the sandbox, or why not. */
/** `transient`: the probe failed for want of something that may come back (processes, memory, time): not the answer for good. */
export type SandboxState = { active: true; bwrap: string } | { active: false; reason: string; transient?: true };

/** The descriptor on which bubblewrap reports the sandbox's pid (stdio 0-2, protocol 3). */
export const STATUS_FD = 4;
/** The first of the descriptors bubblewrap reads a sandboxed child's own files from (sandbox-identity.ts). */
export const FIRST_FILE_FD = STATUS_FD + 1;
const PROBE_TIMEOUT_MS = 15_000;

/** Node's part of a child's command line. */
export interface ChildCommand {
  flags: readonly string[];
  entry: string;
  /** The entry's arguments, given the first descriptor the child is not handed (any the host holds from there on would be inherited). */
  args: (firstFreeFd: number) => readonly string[];
}

/** How a child is started: the command line and the user it runs as. */
export interface Launch {
  command: string;
  args: string[];
  user: SandboxUser | undefined;
  /** Whether the command is bubblewrap (its status on STATUS_FD, a signal death as exit 128+N). */
  sandboxed: boolean;
  /** What to write to its standard input, then end it: bubblewrap reads its system-call filter there (sandbox-isolation.ts). */
  stdin?: Buffer;
  /** What bubblewrap reads from descriptors FIRST_FILE_FD, FIRST_FILE_FD + 1… (the sandbox's own /etc/passwd and /etc/hosts), each written then ended. */
  files?: readonly Buffer[];
}

/**
 * The OS sandbox of the subprocess backend: every child in a bubblewrap container of its own
 * (user, pid, network, ipc, uts and cgroup namespaces; no capabilities; a file system holding
 * only what its grants name), Node's permission model still on inside. Whether it can work here
 * is decided once per configuration by running the exact argument set on `node -e 0`.
 */
export class Sandbox {
  readonly #config: SandboxConfig;
  readonly #bwrap: string | undefined;
  #state: SandboxState | undefined;
  #probe: Promise<SandboxState> | undefined;
  /** Why the last probe failed, when it failed for a passing shortage (and nothing is settled yet). */
  #passing: string | undefined;
  /** Why the last child ran as the host's user instead of `config.user`, if it did. */
  #userProblem: string | undefined;

  constructor(config: SandboxConfig) {
    this.#config = config;
    if (config.mode === 'off') {
      this.#state = { active: false, reason: "sandbox: 'off'" };
      return;
    }
    const bwrapPath = config.bwrapPath ?? 'bwrap';
    this.#bwrap = findExecutable(bwrapPath);
    if (!this.#bwrap && config.bwrapPath !== undefined && !hostReadsTooLittle()) throw bwrapNotFound(bwrapPath);
    const missing = unavailableReason(bwrapPath, this.#bwrap);
    if (!missing) return;
    if (config.mode === 'required') {
      throw new ValidationError(`sandbox: 'required' cannot work here: ${missing}`, { details: { path: 'sandbox', reason: missing } });
    }
    this.#state = { active: false, reason: missing };
    warnOnce(missing);
  }

  /**
   * Why executions must not run: the sandbox is required and `state` says it cannot run, or (any
   * mode) it could not be set up just now: a passing shortage never runs a child unsandboxed.
   */
  refusal(state: SandboxState): string | undefined {
    if (state.active) return undefined;
    if (state.transient) return `${state.reason} (a passing shortage, it seems: the next execution tries again)`;
    return this.#config.mode === 'required' ? state.reason : undefined;
  }

  /** Settled state, once known (synchronously after `ready()` resolved). */
  get state(): SandboxState | undefined {
    return this.#state;
  }

  /** Whether children run sandboxed, probing on first call. */
  ready(): Promise<SandboxState> {
    if (this.#state) return Promise.resolve(this.#state);
    this.#probe ??= probe(this.#bwrap!, this.#config).then((state) => {
      if (!state.active && state.transient) {
        // Not settled: the next call probes again.
        this.#passing = state.reason;
        this.#probe = undefined;
        return state;
      }
      this.#state = state;
      if (!state.active && this.#config.mode === 'auto') warnOnce(state.reason);
      if (state.active && process.pid === 1) warnOnce(PID_1, 'This host is pid 1 of its pid namespace', 'KB_PLUGIN_SANDBOX_PID_1');
      return state;
    });
    return this.#probe;
  }

  /**
   * The command line for a child of `profile`. Sandboxed, its view holds what `grants` names
   * (read-only or read-write as granted), the Node runtime, and, by the handler's own grants,
   * the system's programs (`childProcess`) or the host's network and resolver files (`network`),
   * and a user and `localhost` of its own where the host shows none (sandbox-identity.ts).
   * `spare`: the workspace grant is the workspace root, where the lease is handed over later.
   */
  launch(profile: ChildProfile, grants: FsGrants, node: ChildCommand, cwd: string, spare: boolean): Launch {
    if (!this.#state?.active) return { command: this.#config.execPath, args: [...node.flags, node.entry, ...node.args(STATUS_FD)], user: undefined, sandboxed: false };
    warnOfHiddenDependencies(profile.pluginRoot, grants.read);
    const { handed, passOnly } = this.#prepareFolders(profile, spare);
    const view = runtimeView(this.#config.execPath);
    view.readOnly(node.entry);
    if (profile.childProcess) for (const folder of SYSTEM_FOLDERS) view.readOnly(folder);
    if (profile.network) for (const file of NETWORK_FILES) view.readOnly(file);
    for (const p of grants.read) if (!p.endsWith(`${path.sep}*`)) view.readOnly(p);
    for (const p of grants.write) if (!p.endsWith(`${path.sep}*`)) view.writable(p);
    const user = this.#userFor(view, new Set([...handed, ...passOnly].flatMap(withRealPath)), profile.pluginRoot);
    // A declared folder from the plugin folder on (a folder on its way may be another's to write); the lease from its parent.
    for (const dir of handed) this.handOver(dir, user, dir === profile.workspaceGrant ? undefined : profile.pluginRoot);
    const files = identityFiles(view, user?.uid ?? process.getuid!(), user?.gid ?? process.getgid!());
    const command = [...node.flags, node.entry, ...node.args(FIRST_FILE_FD + files.length)];
    return {
      command: this.#state.bwrap,
      args: [...view.rootArgs(), ...isolationArgs(profile.network, this.#config.tmpMb), ...identityArgs(files, FIRST_FILE_FD), ...view.args(), '--chdir', cwd, '--json-status-fd', String(STATUS_FD), '--', this.#config.execPath, ...command],
      user,
      sandboxed: true,
      files: files.map((file) => file.data),
      ...(SET_ID_FILTER ? { stdin: profile.network ? NETWORK_FILTER : SET_ID_FILTER } : {}),
    };
  }

  /**
   * A bind needs an existing path: the declared write folders are created. Those and a cold
   * child's lease are `handed` to the sandbox user if it runs as one (a child dropped to another
   * uid cannot write a folder of the host's). The workspace root only has to let that user pass
   * (0711: it may enter the lease it is handed, not list the others); a spare's grant is that root,
   * so a root that others may list or write (one made 0755 before the backend) loses those bits:
   * every lease is the sandbox user's, and a spare's handler would find and write the others'.
   */
  #prepareFolders(profile: ChildProfile, spare: boolean): { handed: string[]; passOnly: string[] } {
    const handed = writeFolders(profile);
    const lease = profile.workspaceGrant;
    if (!lease) return { handed, passOnly: [] };
    const root = spare ? lease : path.dirname(lease);
    mkdirSync(root, { recursive: true, mode: 0o711 });
    if (this.#config.user) {
      const mode = statSync(root).mode & 0o777;
      const passOnly = (mode & ~0o006) | 0o001;
      if (passOnly !== mode) chmodSync(root, passOnly);
    }
    return spare ? { handed, passOnly: [root] } : { handed: [...handed, lease], passOnly: [] };
  }

  /**
   * Sandboxed, the declared write folders are created before anything is computed from them: a
   * bind needs an existing path, and Node's flags for a folder differ by whether it exists. A
   * declared path that is a file is bound as it is, as Node's flags allow it unsandboxed.
   */
  createWriteFolders(profile: ChildProfile): void {
    if (this.#state?.active) for (const dir of writeFolders(profile)) makeFolder(profile.pluginRoot, dir);
  }

  /**
   * A folder the child writes (a lease, a declared write folder), handed to the user it runs as
   * (if any), its setgid bit cleared (sandbox-folders.ts). Never through a link, from `base` (the
   * plugin folder for a declared one; the lease's parent, the host's, for a lease) on: what is
   * handed over is the folder itself.
   */
  handOver(dir: string, user: SandboxUser | undefined, base = path.dirname(dir)): void {
    handOverFolder(base, dir, user);
  }

  /**
   * The sandbox user, if it can use every path of `view` (`exempt` ones only need to be reached:
   * they are handed to it or only passed through). A plugin kept where that user cannot reach
   * (under /root, say) still runs sandboxed, as the host's user: said once, and in health().
   */
  #userFor(view: SandboxView, exempt: ReadonlySet<string>, pluginRoot: string): SandboxUser | undefined {
    const user = this.#config.user;
    if (!user) return undefined;
    const problem = unusableBy(user, view.binds(), exempt);
    if (!problem) return user;
    // Inside the plugin folder, what the sandbox user cannot use is the plugin's own doing (a
    // folder it ships 0700): it never makes the child run as the host's user.
    const root = withRealPath(pluginRoot).at(-1)!;
    if (problem.path.startsWith(`${root}${path.sep}`)) {
      throw new PermissionDeniedError(`${problem.why}: a path inside the plugin folder that the sandbox user cannot use (make it readable by others): refused`, {
        details: { resource: `fs:${path.relative(root, problem.path)}`, path: problem.path },
      });
    }
    this.#userProblem = `${problem.why}; this child runs as the host's user (make the path reachable, or set sandboxUser)`;
    warnOnce(`uid ${user.uid} not used: ${this.#userProblem}`, 'Sandboxed children run as the host user');
    return undefined;
  }

  /** What `health()` reports. */
  report(enforcePermissions: boolean): IsolationReport {
    const state = this.#state;
    const model = enforcePermissions ? ['permission-model'] : [];
    if (!state?.active) {
      const reason = state?.reason ?? (this.#passing ? `the sandbox could not be set up at its last try: ${this.#passing}` : 'the sandbox has not been probed yet');
      return { requested: this.#config.mode, active: 'process', layers: ['process', ...model, 'env allow-list'], reason };
    }
    const user = this.#config.user && !this.#userProblem ? [`uid ${this.#config.user.uid} gid ${this.#config.user.gid}`] : [];
    return {
      requested: this.#config.mode,
      active: 'bubblewrap',
      layers: ['bubblewrap', 'namespaces: user pid net ipc uts cgroup mount', 'no capabilities', `own /tmp of ${this.#config.tmpMb} MiB, /dev/shm of ${SHM_MB} MiB`, ...(SET_ID_FILTER ? ['seccomp: no setuid or setgid files, no kernel keyrings, no Unix or vsock sockets without network'] : []), ...user, ...model, 'env allow-list'],
      reason: `every child runs under ${state.bwrap}${this.#userProblem ? `; not as uid ${this.#config.user!.uid}: ${this.#userProblem}` : ''}`,
    };
  }
}

/** The declared write folders, each checked to lead nowhere outside the plugin folder (PERMISSION_DENIED). */
function writeFolders(profile: ChildProfile): string[] {
  return declaredFolders(profile).write;
}

/** A view holding the Node runtime and the host's time zone: what every sandboxed child, and the probe, starts from. */
function runtimeView(execPath: string): SandboxView {
  const view = new SandboxView();
  for (const file of [...runtimeFiles(execPath), ...timeZoneFiles()]) view.readOnly(file);
  return view;
}

/**
 * A `bwrapPath` the host named that is not there: refused, in 'auto' too, since running every
 * child without the sandbox the host asked for, on a typo, would be a quiet surprise.
 */
function bwrapNotFound(bwrapPath: string): ValidationError {
  const where = bwrapPath.includes('/') ? `no executable file at "${bwrapPath}"` : `no executable "${bwrapPath}" on PATH`;
  const message = `bwrapPath: ${where}; fix it, leave bwrapPath out to use "bwrap" from PATH, or set sandbox: 'off'`;
  return new ValidationError(message, { details: { path: 'bwrapPath', reason: where } });
}

/** Why bubblewrap cannot be used at all (`found`: where it was found), decided without running anything; undefined when it may. */
function unavailableReason(bwrapPath: string, found: string | undefined): string | undefined {
  if (process.platform !== 'linux') return `bubblewrap runs on Linux only (this is ${process.platform})`;
  const tooLittle = hostReadsTooLittle();
  if (tooLittle) return tooLittle;
  if (!found) return `bubblewrap not found (${bwrapPath.includes('/') ? bwrapPath : `"${bwrapPath}" on PATH`}); install the bubblewrap package`;
  return undefined;
}

/**
 * A host under Node's permission model that may not read every file: the sandbox is set up from
 * files anywhere (bwrap on PATH, Node and the libraries it loads, shown inside), which such a
 * host finds missing, so it would say "bubblewrap not found" where it is installed.
 */
function hostReadsTooLittle(): string | undefined {
  if (hostMayAccess('fs.read', path.sep)) return undefined;
  return `the host process runs under Node's permission model (${permissionModelFlag() ?? '--permission'}) without --allow-fs-read=*, and setting up bubblewrap's sandbox reads files outside its grants (bwrap on PATH, Node and the libraries it loads): start it with --allow-fs-read=* as well, or set sandbox: 'off'`;
}

const probes = new Map<string, Promise<SandboxState>>();

/**
 * What bubblewrap (or the kernel under it) says when it is short of processes, memory or file
 * descriptors for a moment: EAGAIN, ENOMEM, EMFILE, ENFILE ("Too many open files [in system]").
 * A host out of descriptors (its own limit, or the system's, which a sandboxed plugin's processes
 * can fill) fails the probe's spawn with EMFILE or ENFILE: taken for good, that would run every
 * later child of the configuration unsandboxed under 'auto', and fail every one under 'required'.
 */
const SHORTAGE = /Resource temporarily unavailable|Cannot allocate memory|Too many open files|EAGAIN|ENOMEM|EMFILE|ENFILE/i;

/** Run `node -e 0` with the full argument set, as the sandbox user: cached per configuration. */
function probe(bwrap: string, config: SandboxConfig): Promise<SandboxState> {
  const key = JSON.stringify([bwrap, config.execPath, config.user, config.tmpMb]);
  let cached = probes.get(key);
  if (!cached) {
    const probed = (cached = runProbe(bwrap, config));
    probes.set(key, probed);
    // A passing shortage is no answer for the process: the next backend, or execution, probes again.
    void probed.then((state) => !state.active && state.transient && probes.get(key) === probed && probes.delete(key));
  }
  return cached;
}

function runProbe(bwrap: string, config: SandboxConfig): Promise<SandboxState> {
  const view = runtimeView(config.execPath);
  const args = [...view.rootArgs(), ...isolationArgs(false, config.tmpMb), ...view.args(), '--', config.execPath, '-e', '0'];
  // A Node the sandbox user cannot reach (nvm or npx under a 0700 /root) is probed as the host's
  // user: each child then runs sandboxed as that user, and says so (Sandbox.#userFor).
  const user = config.user && !unusableBy(config.user, view.binds(), new Set()) ? config.user : undefined;
  return new Promise((resolve) => {
    let child: ReturnType<typeof execFile>;
    try {
      child = execFile(
        bwrap,
        args,
        { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, cwd: '/', timeout: PROBE_TIMEOUT_MS, ...(user ?? {}) },
        (error, _stdout, stderr) => {
          if (!error) return resolve({ active: true, bwrap });
          const said = String(stderr).trim().split('\n').slice(-2).join(' ') || (error as Error).message;
          const as = user ? ` as uid ${user.uid}` : '';
          const timedOut = (error as { killed?: boolean }).killed === true;
          if (timedOut || SHORTAGE.test(said) || passingShortage(error)) return resolve({ active: false, reason: `bubblewrap could not create a sandbox just now${as}: ${timedOut ? `no answer in ${PROBE_TIMEOUT_MS} ms` : said}`, transient: true });
          const execPath = execPathProblem(config.execPath, String(stderr).trim(), (error as { code?: unknown }).code);
          resolve({ active: false, reason: execPath ?? `bubblewrap cannot create a sandbox here${as}: ${said}` });
        },
      );
    } catch (error) {
      // Thrown at once: the host may not start processes at all (Node's permission model).
      const refused = refusedByHostPermissions(error, 'child', 'bubblewrap or any child process');
      if (!refused && passingShortage(error)) {
        return resolve({ active: false, reason: `bubblewrap could not be started just now: ${(error as Error).message}`, transient: true });
      }
      // Thrown by spawn as the sandbox user (EINVAL, EPERM: a uid this process cannot take): say which.
      const as = user ? ` as uid ${user.uid} (sandboxUser; \`sandboxUser: false\` runs children as the host's user)` : '';
      return resolve({ active: false, reason: refused ?? `bubblewrap cannot be started${as}: ${(error as Error)?.message ?? String(error)}` });
    }
    child.stdin?.on('error', () => undefined).end(SET_ID_FILTER);
    child.unref();
  });
}

/**
 * bubblewrap's outer process exits without collecting the sandbox's init when the handler's
 * process ends by itself (a timeout's SIGTERM, an abort, `process.exit`): the init goes to pid 1,
 * and Node collects only what it spawned.
 */
const PID_1 =
  'each sandboxed execution that ends by its own exit (a timeout, an abort, process.exit) leaves bubblewrap\'s init for pid 1 to collect, ' +
  'and Node collects only the processes it spawned, so they stay zombies. Run the host under an init that collects them (docker run --init, tini, dumb-init)';

/** The reasons warned of (the last MAX_REMEMBERED: a host that deploys each release to a new folder names a new one each time). */
const warned = new Set<string>();
const MAX_REMEMBERED = 256;

function warnOnce(reason: string, what = 'Subprocess children run without the bubblewrap sandbox', code = 'KB_PLUGIN_SANDBOX_UNAVAILABLE'): void {
  if (warned.has(reason)) return;
  if (warned.size >= MAX_REMEMBERED) warned.delete(warned.values().next().value!);
  warned.add(reason);
  process.emitWarning(`${what}: ${reason}. See docs/backends/subprocess.md.`, { code });
}
