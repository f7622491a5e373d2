import { existsSync } from 'node:fs';
import { HandlerNotFoundError, type WorkerCrashedError } from '@kb-labs/plugin-execution-core';
import type { RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';

/**
 * A child that could not start or load because its plugin's folder was gone (moved or deleted
 * under the running host: a deploy that swaps folders, a branch switch): the plugin is not there,
 * no runner crashed. Undefined when the folder is there and was there at the child's start.
 */
export function folderGoneError(task: RunnerTask, crash: WorkerCrashedError): HandlerNotFoundError | undefined {
  if (existsSync(task.pluginRoot) && !missingAtStart(crash.details.stderrTail, task.pluginRoot)) return undefined;
  return new HandlerNotFoundError(`Handler "${task.handlerId}" of plugin "${task.pluginId}": its plugin folder ${task.pluginRoot} does not exist (moved or deleted while the host runs)`, {
    details: { pluginId: task.pluginId, handlerId: task.handlerId },
    cause: crash,
  });
}

/** bubblewrap said, as the child started, that the plugin's folder was not there (it may be back by now). */
function missingAtStart(stderrTail: unknown, pluginRoot: string): boolean {
  return typeof stderrTail === 'string' && /bwrap: Can't (chdir to|find source path) /.test(stderrTail) && stderrTail.includes(pluginRoot);
}
