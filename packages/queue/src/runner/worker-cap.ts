import { PermissionDeniedError, missingPermissions, type PermissionSpec, type PluginRegistry } from '@kb-labs/plugin-execution-core';
import type { TaskBody, WorkerIdentity } from '../shared/wire.js';

/**
 * The operator's cap on what this worker grants (its local backend's `permissions`): a handler
 * that declares more is refused here, before it runs, whatever its caller granted. The caller's
 * own check (its backend's grant, or the request's `context.permissions`) came first; the request
 * goes on to the local backend with that context, which replaces the local backend's grant there,
 * so without this check a host could widen the cap with `context.permissions`.
 */
export function capRefusal(cap: PermissionSpec | undefined, task: TaskBody, registry: PluginRegistry, worker: WorkerIdentity): PermissionDeniedError | undefined {
  if (cap === undefined) return undefined;
  const { pluginId, handlerId } = task;
  const missing = missingPermissions(registry.resolve(pluginId, handlerId).permissions, cap);
  if (missing.length === 0) return undefined;
  return new PermissionDeniedError(
    `Handler "${handlerId}" of plugin "${pluginId}" needs permissions worker ${worker.id} (${worker.host}) does not grant: ${missing.join(', ')} ` +
      "(the worker's cap: its local backend's `permissions` option, whatever the calling host grants); it did not run",
    { details: { pluginId, handlerId, missing, phase: 'preflight', worker: worker.id } },
  );
}
