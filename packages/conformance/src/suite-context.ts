import type { BackendOptions, IExecutionBackend } from '@kb-labs/plugin-execution-core';

export interface ConformanceCapabilities {
  /** Stops a `while (true) {}` handler on timeout (worker-pool, subprocess). */
  preemptsSyncCode: boolean;
  /** Survives process.exit / uncaught errors in the runner, reporting WORKER_CRASHED. */
  isolatesCrashes: boolean;
  /** A handler's changes to Object.prototype do not reach the next execution. */
  isolatesGlobals: boolean;
  /**
   * The handler's file system is sandboxed (subprocess: Node's permission model), so it cannot
   * even create a symlink — Node refuses symlink creation to processes without full fs access.
   * @default false
   */
  sandboxesFs?: boolean;
  /**
   * The workspace is the runner's, on its machine, not a lease under the host's root (queue:
   * the worker's): the handler's directory is not under the suite's root, and `meta` reports
   * what the runner listed and kept there.
   * @default false
   */
  workspaceOnRunner?: boolean;
  /**
   * The handler's module is imported by Node's own loader. Not so for in-process inside vitest,
   * whose module runner also loads what the host imports (it accepts ES module syntax anywhere):
   * that backend proves module-loading errors in a plain Node process of its own.
   * @default true
   */
  loadsModulesWithNode?: boolean;
  /**
   * The runner loads a plugin from the folder the host registered, so a plugin a test writes on
   * the fly runs. Not so for queue workers, which load their own plugin folders when they start
   * (there it is HANDLER_NOT_FOUND naming the worker).
   * @default true
   */
  runsHostPlugins?: boolean;
  /**
   * `reloadPlugin()` and the `watch` option make the runners load a plugin's new code. The
   * reload tests also need `runsHostPlugins` (they edit a copy of a plugin on the host).
   * @default true
   */
  reloadsPlugins?: boolean;
  /**
   * What a handler writes to stdout and stderr reaches `onLog` (stream `stdout` / `stderr`). Not
   * so in-process, where it is the host's own output.
   * @default true
   */
  capturesOutput?: boolean;
  /**
   * The handler runs in the host's own process (in-process, worker-pool), so a SharedArrayBuffer
   * in the input or context reaches it as the same shared memory. Where a wire between processes
   * carries the task (subprocess, queue), it is refused instead, naming where.
   * @default false
   */
  sharesMemory?: boolean;
  /**
   * The runners are other machines (queue; `remoteRunners` of the backend kit's defaults): the
   * `beginBy` option, a time on the host's clock, is refused naming it, and its other cases are
   * skipped.
   * @default false
   */
  remoteRunners?: boolean;
  /**
   * The handler's process holds its runner's channel to the host on fd 3, in the subprocess
   * backend's framing (subprocess): the suite has a handler write the runtime's own `may-begin`
   * there, to prove that the host does not take it for the runtime's. Elsewhere a handler has no
   * way to its channel, and that handler only runs.
   * @default false
   */
  channelOnFd3?: boolean;
}

export type BackendFactory = (options: BackendOptions & Record<string, unknown>) => IExecutionBackend;

/** What every part of the suite gets from `describeConformance`. */
export interface SuiteContext {
  /** The backend type under test, as `backend.type` reports it. */
  name: string;
  capabilities: ConformanceCapabilities;
  /**
   * A backend on every fixture plugin, with a fresh `testPlatform()` and workspaces under `root()`;
   * shut down after the test, which then checks that no workspace was left behind.
   */
  make: (options?: BackendOptions & Record<string, unknown>) => IExecutionBackend;
  /** The workspace root of the suite (a fresh temporary directory, known once the suite started). */
  root: () => string;
}

/** A hard upper bound for "returns on time", generous because CI machines are shared and slow. */
export const SLACK_MS = 3000;
