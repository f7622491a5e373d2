import type { RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';
import type { TaskBody } from '../shared/wire.js';

/**
 * The task a host puts in the pool's stream for `task`: `plugin` its copy of the plugin (its
 * version, and what the handler declares: declaredPermissionsKey), `workspace` whether the
 * execution gets one on the worker.
 */
export function taskBody(task: RunnerTask, plugin: { version: string; permissions: string | undefined }, workspace: boolean, keepWorkspace: boolean): TaskBody {
  return {
    executionId: task.executionId,
    pluginId: task.pluginId,
    pluginVersion: plugin.version,
    ...(plugin.permissions !== undefined ? { declaredPermissions: plugin.permissions } : {}),
    handlerId: task.handlerId,
    input: task.input,
    inputFollows: false,
    context: task.context,
    timeoutMs: task.timeoutMs,
    workspace,
    keepWorkspace,
    ...(task.channel ? { channel: task.channel } : {}),
    ...(task.traceparent ? { traceparent: task.traceparent } : {}),
  };
}
