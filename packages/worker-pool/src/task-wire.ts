/**
 * A task as it crosses to a thread. What is the same for every execution of a handler (its
 * plugin's folder, module, export, permissions, heap cap, generation) crosses once per thread and
 * is named by a number after that; each execution carries only what is its own. Structured clone
 * builds every object anew on the thread, key by key, so the smaller message is less work on both
 * sides (docs/backends/worker-pool.md).
 */
import type { RunnerTask } from '@kb-labs/plugin-execution-core/backend-kit';

type HandlerFields = Pick<RunnerTask, 'pluginId' | 'handlerId' | 'pluginRoot' | 'entryPath' | 'exportName' | 'permissions' | 'memoryMb' | 'generation' | 'moduleKey'>;

/** One execution's part, in a fixed order. */
type OwnFields = [RunnerTask['executionId'], RunnerTask['input'], RunnerTask['context'], RunnerTask['workspaceDir'], RunnerTask['timeoutMs'], RunnerTask['traceparent'], RunnerTask['channel'], RunnerTask['beginBy']];

export interface PackedTask {
  /** The handler's number on this thread. */
  h: number;
  /** The handler's fields, the first time this thread gets it. */
  d?: HandlerFields;
  own: OwnFields;
}

/** A handler's name on the host's side of the wire. */
export function handlerKey(task: Pick<RunnerTask, 'pluginId' | 'handlerId'>): string {
  return `${task.pluginId}\n${task.handlerId}`;
}

/** Host side, one per thread: which handlers the thread has been sent. */
export class TaskPacker {
  readonly #sent = new Map<string, { h: number; fields: HandlerFields }>();
  #count = 0;
  /** The handler (handlerKey) of the last task packed: the thread's last (ThreadPool prefers it for the same handler's next task). */
  last: string | undefined;

  pack(task: RunnerTask): PackedTask {
    const own: OwnFields = [task.executionId, task.input, task.context, task.workspaceDir, task.timeoutMs, task.traceparent, task.channel, task.beginBy];
    const key = handlerKey(task);
    this.last = key;
    const sent = this.#sent.get(key);
    if (sent && sameHandler(sent.fields, task)) return { h: sent.h, own };
    const fields: HandlerFields = {
      pluginId: task.pluginId,
      handlerId: task.handlerId,
      pluginRoot: task.pluginRoot,
      entryPath: task.entryPath,
      exportName: task.exportName,
      permissions: task.permissions,
      memoryMb: task.memoryMb,
      generation: task.generation,
      moduleKey: task.moduleKey,
    };
    // A handler sent before with other fields keeps its number: the thread replaces what it has.
    const h = sent?.h ?? ++this.#count;
    this.#sent.set(key, { h, fields });
    return { h, d: fields, own };
  }

  /** The thread did not get `packed` (it could not be posted): its handler fields were not sent after all. */
  unsent(packed: PackedTask, task: RunnerTask): void {
    if (packed.d) this.#sent.delete(handlerKey(task));
  }
}

/** The same handler as sent (a reload changes its generation and moduleKey; a re-registered plugin, its files or permissions). */
function sameHandler(a: HandlerFields, task: RunnerTask): boolean {
  return (
    a.generation === task.generation &&
    a.moduleKey === task.moduleKey &&
    a.pluginRoot === task.pluginRoot &&
    a.entryPath === task.entryPath &&
    a.exportName === task.exportName &&
    a.permissions === task.permissions &&
    a.memoryMb === task.memoryMb
  );
}

/** Thread side: the handlers received so far, and the task rebuilt from a packed one. */
export class TaskUnpacker {
  readonly #handlers = new Map<number, HandlerFields>();

  unpack(packed: PackedTask): RunnerTask {
    if (packed.d) this.#handlers.set(packed.h, packed.d);
    const d = this.#handlers.get(packed.h)!;
    const [executionId, input, context, workspaceDir, timeoutMs, traceparent, channel, beginBy] = packed.own;
    return {
      executionId,
      pluginId: d.pluginId,
      handlerId: d.handlerId,
      pluginRoot: d.pluginRoot,
      entryPath: d.entryPath,
      exportName: d.exportName,
      input,
      context,
      workspaceDir,
      permissions: d.permissions,
      timeoutMs,
      memoryMb: d.memoryMb,
      generation: d.generation,
      moduleKey: d.moduleKey,
      traceparent,
      channel,
      beginBy,
    };
  }
}
