import { HandlerNotFoundError, ValidationError, type KnownExecutionError, type PluginRegistry } from '@kb-labs/plugin-execution-core';
import { declaredPermissionsKey } from '../shared/declared-permissions.js';
import { QUEUE_PROTOCOL_VERSION, type TaskBody, type WorkerIdentity } from '../shared/wire.js';

/** What a worker knows to judge a task by. */
export interface RefusalContext {
  identity: WorkerIdentity;
  registry: PluginRegistry;
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
