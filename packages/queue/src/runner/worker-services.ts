import type { IExecutionBackend, PermissionSpec, Platform, PluginRegistry } from '@kb-labs/plugin-execution-core';
import type { Courier } from '../shared/courier.js';
import type { PoolSubjects } from '../shared/subjects.js';
import type { WorkerIdentity } from '../shared/wire.js';
import type { CallerWatch } from './caller-watch.js';
import type { PeerForgeries } from './peer-forgeries.js';
import type { PeerPlugins } from './peer-plugins.js';
import type { SilentCallers } from './silent-callers.js';
import type { UnbuiltPlugins } from './unbuilt-plugins.js';
import type { WorkerExecution } from './worker-execution.js';

/** What one execution needs from its worker. */
export interface WorkerServices {
  readonly identity: WorkerIdentity;
  readonly courier: Courier;
  readonly watch: CallerWatch;
  readonly registry: PluginRegistry;
  /** The plugin versions the pool's other workers have. */
  readonly peers: PeerPlugins;
  /** The plugins not built on this worker (none of their entry files here). */
  readonly unbuilt: UnbuiltPlugins;
  /** Callers that did not answer a `started`: their tasks are handed back unasked for a while. */
  readonly silentCallers: SilentCallers;
  /** What peers sent that no host writes: dropped, counted, said (a rate-limited warning). */
  readonly forgeries: PeerForgeries;
  /** The operator's cap on what handlers are granted here (its local backend's `permissions`), if set (worker-cap.ts). */
  readonly cap: PermissionSpec | undefined;
  /** The worker's own services, used before the caller's. */
  readonly platform: Platform | undefined;
  readonly subjects: PoolSubjects;
  readonly maxPayloadBytes: number;
  localBackend(workspace: boolean): Promise<IExecutionBackend>;
  /**
   * Whether no other execution of the same id (from another host) runs here, or, after its caller
   * was asked now (a host that died, restarted and retried the id at once), it stopped soon.
   */
  idFreeFor(execution: WorkerExecution): Promise<boolean>;
  /** Another task of its caller under its id (not a redelivery of its own) runs here. */
  earlierUnderKey(execution: WorkerExecution): boolean;
  /** Its caller accepted another delivery of its task here (one delivered again while it asked). */
  acceptedHere(execution: WorkerExecution): boolean;
}
