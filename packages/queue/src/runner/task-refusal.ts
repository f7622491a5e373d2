import { HandlerNotFoundError, ValidationError, type KnownExecutionError, type PluginRegistry } from '@kb-labs/plugin-execution-core';
import { MAX_EXECUTION_ID_LENGTH, MAX_TIMER_MS } from '@kb-labs/plugin-execution-core/backend-kit';
import { declaredPermissionsKey } from '../shared/declared-permissions.js';
import type { PoolSubjects } from '../shared/subjects.js';
import { MAX_TASK_ID_LENGTH, QUEUE_PROTOCOL_VERSION, type TaskBody, type WorkerIdentity } from '../shared/wire.js';

/** What a worker knows to judge a task by. */
export interface RefusalContext {
  identity: WorkerIdentity;
  registry: PluginRegistry;
}

/**
 * Whether a task's headers are none a host of this pool sends: a peer's forgery, removed unasked. A
 * caller that is no host of the pool would have this worker ask anywhere (its own tasks' subject)
 * and hand the task back for ever; a patience no host has would time each heartbeat past Node's
 * longest timer; an execution id or task id longer than a host's would make the worker's
 * `started`, which carries both, larger than a server whose max_payload is under JetStream's 64 KiB
 * of headers takes, though the task was not.
 */
export function forgedClaim(task: { id: string; taskId: string; claim: { caller: string; lostMs: number } }, subjects: PoolSubjects): boolean {
  const { id, taskId, claim } = task;
  const idsOfHost = id.length > 0 && id.length <= MAX_EXECUTION_ID_LENGTH && taskId.length <= MAX_TASK_ID_LENGTH;
  return !idsOfHost || !subjects.isCaller(claim.caller) || !(claim.lostMs >= 100 && claim.lostMs <= MAX_TIMER_MS);
}

/**
 * Why this worker cannot run the task as its caller knows it: another queue protocol, its id
 * taken here by another host's execution (`idTaken`), a plugin it lacks or has in another version.
 */
export function taskRefusal(task: TaskBody, claim: { id: string; protocol: number; idTaken: boolean }, worker: RefusalContext): KnownExecutionError | undefined {
  const who = workerName(worker);
  const { protocol } = claim;
  if (protocol !== QUEUE_PROTOCOL_VERSION) {
    return new ValidationError(`The host speaks queue protocol ${protocol}, ${who} speaks ${QUEUE_PROTOCOL_VERSION}: upgrade them together`, { details: { reason: 'protocol-mismatch', hostProtocol: protocol, workerProtocol: QUEUE_PROTOCOL_VERSION } });
  }
  if (claim.idTaken) {
    return new ValidationError(
      `Execution id "${claim.id}" is running on ${who} for another host: an id names one execution on a worker ` +
        'at a time, so give each execution an id of its own',
      { details: { path: 'executionId', reason: 'duplicate' } },
    );
  }
  return pluginRefusal(task, worker);
}

/** The task's plugin is not on this worker, or is there in another version than its caller's, or without the task's handler (another build of that version). */
export function pluginRefusal(task: TaskBody, worker: RefusalContext): KnownExecutionError | undefined {
  const plugin = worker.registry.get(task.pluginId);
  if (!plugin) {
    const available = worker.registry.list().map((p) => p.id);
    return new HandlerNotFoundError(`Plugin "${task.pluginId}" is not installed on ${workerName(worker)} (it has: ${available.join(', ') || 'none'})`, {
      details: { pluginId: task.pluginId, handlerId: task.handlerId, availablePlugins: available },
    });
  }
  if (plugin.manifest.version !== task.pluginVersion) {
    return new ValidationError(
      `Plugin "${task.pluginId}" is version ${JSON.stringify(task.pluginVersion)} on the host but version ${JSON.stringify(plugin.manifest.version)} on ${workerName(worker)}: deploy the same version to both`,
      { details: { reason: 'plugin-version-mismatch', pluginId: task.pluginId, hostVersion: task.pluginVersion, workerVersion: plugin.manifest.version } },
    );
  }
  if (!Object.hasOwn(plugin.manifest.handlers, task.handlerId)) {
    const handlers = Object.keys(plugin.manifest.handlers);
    return new HandlerNotFoundError(
      `Plugin "${task.pluginId}" ${plugin.manifest.version} on ${workerName(worker)} has no handler "${task.handlerId}" (handlers: ${handlers.join(', ') || 'none'}), ` +
        "though the host's copy of that version has it: deploy the same build to both",
      { details: { pluginId: task.pluginId, handlerId: task.handlerId, availableHandlers: handlers } },
    );
  }
  if (task.declaredPermissions !== undefined && task.declaredPermissions !== declaredPermissionsKey(plugin.manifest, task.handlerId)) {
    return new ValidationError(
      `Plugin "${task.pluginId}" ${plugin.manifest.version} declares other permissions for handler "${task.handlerId}" on ${workerName(worker)} than on the host ` +
        "(the host checked its grant against its own copy; the worker would run it under its copy's): deploy the same build to both",
      { details: { reason: 'plugin-manifest-mismatch', pluginId: task.pluginId, handlerId: task.handlerId, host: task.declaredPermissions, worker: declaredPermissionsKey(plugin.manifest, task.handlerId) } },
    );
  }
  return undefined;
}

function workerName(worker: RefusalContext): string {
  return `worker ${worker.identity.id} (${worker.identity.host})`;
}
