import type { RunnerTask } from '../runner/handler-runtime.js';
import type { ExecutionResult } from '../types.js';
import type { Execution } from './execution.js';
import type { ExecutionControl } from './execution-control.js';
import type { LiveList, LiveMap } from './live-list.js';
import type { PluginManifest } from './manifest.js';
import type { PermissionSpec } from './permissions.js';
import type { Platform } from './platform-gateway.js';
import type { PluginRegistry } from './plugin-registry.js';
import type { Scheduler } from './scheduler.js';
import type { WorkspaceManager } from './workspace-manager.js';

/** What the lifecycle needs from its backend (BaseBackend gives it; see there). */
export interface ExecutionHost {
  readonly type: string;
  readonly registry: PluginRegistry;
  readonly platform: Platform;
  readonly workspace: WorkspaceManager | undefined;
  readonly scheduler: Scheduler;
  readonly grant: PermissionSpec;
  readonly defaultTimeoutMs: number;
  /** The backend cannot stop its runner (it runs on the host's own loop: in-process): give the slot back at a stop without waiting for it, and an answer after the time limit is a TIMEOUT. */
  readonly releaseSlotOnStop: boolean;
  /** The runners are on other machines: the execution span is a CLIENT span (else INTERNAL). */
  readonly remoteRunners: boolean;
  /** Those runners give executions workspaces of their own, there (`workspace` is undefined here): keepWorkspace is theirs to keep. */
  readonly remoteWorkspaces: boolean;
  /** Whether shutdown has begun refusing new work: calls from now on, and any execution that would have to queue. */
  stopping(): boolean;
  /** Whether shutdown's wait for the executions called before it is over: one not yet handed to its runner never is. */
  closing(): boolean;
  /** Plugins loaded (or their loading failed: it throws that) for an execution of `pluginId`; ABORTED once `signal` aborts while they load. */
  ready(pluginId: string, signal?: AbortSignal): Promise<void> | undefined;
  /** Orders workspace creation: dispatches follow admission order. */
  takeTurn(): { turn: Promise<void>; done: () => void };
  dispatch(task: RunnerTask, control: ExecutionControl): Promise<unknown>;
  /** Why an execution handed over has no runner yet, for the TIMEOUT of one that never started (undefined: no more to say); `manifest`: its plugin's as it was called. */
  unstartedReason(task: RunnerTask, manifest: PluginManifest): string | undefined;
  /** The result, just before the caller gets it (stats); `dispatched`: it reached a runner. */
  finished(result: ExecutionResult, dispatched: boolean): void;
  /** A release that outlives the result (a stopped runner not gone yet): shutdown waits for it. */
  track(release: Promise<unknown>): void;
  /** Shutdown's way to stop what runs, and what waits for its workspace (a LiveList, not a Set: live-list.ts). */
  running: LiveList<Execution>;
  /** The ids callers chose for executions not finished yet: one may not be given to two at once. */
  readonly idsInUse: LiveMap<true>;
}
