/** Host side: which idle thread takes a task, and which waiting task a thread that comes idle takes. */
import { handlerKey } from './task-wire.js';

interface IdleThread {
  readonly endedBy: unknown;
  readonly lastHandler: string | undefined;
  /** It holds code its handler left to run later: it would decline another handler's task, and be retired. */
  readonly bound: boolean;
}

/**
 * An idle thread for a task of handler `key`: the one that ran that handler last, else a fresh
 * one, else one used before. A thread bound to another handler (code it left to run later) is
 * handed the task only when no other thread can start (`canGrow()` false): it would decline it and
 * be retired, so while the pool has room a new thread starts instead, and two handlers that take
 * turns keep a thread each; when it has none, the bound thread idle longest is handed it. One ended since (its idle time up, found spinning, shutdown) is on
 * its way out: not handed anything.
 */
export function takeIdle<T extends IdleThread>(idle: T[], key: string, canGrow: () => boolean): T | undefined {
  let chosen = -1;
  // Asked only when a bound thread is met (seldom), and once.
  let grows: boolean | undefined;
  for (let i = idle.length - 1; i >= 0; i--) {
    const thread = idle[i]!;
    if (thread.endedBy) continue;
    if (thread.lastHandler === key) {
      chosen = i;
      break;
    }
    if (thread.bound && (grows ??= canGrow())) continue;
    const [mine, best] = [rank(thread), chosen < 0 ? Infinity : rank(idle[chosen]!)];
    // Among bound ones (the pool cannot grow), the one idle longest goes: kept, a thread bound to a
    // handler not called since would have each other task declined by the one used last.
    if (mine < best || (mine === BOUND && best === BOUND)) chosen = i;
  }
  return chosen < 0 ? undefined : idle.splice(chosen, 1)[0];
}

const BOUND = 2;

/** Fresh first, then one used before, then one bound to its handler. */
function rank(thread: IdleThread): number {
  if (thread.bound) return BOUND;
  return thread.lastHandler === undefined ? 0 : 1;
}

/**
 * A thread bound to its handler that comes idle takes a waiting task of that handler first, if
 * one waits (another's would be declined there): moved to the head of `waiting`.
 */
export function ownTaskFirst<E>(waiting: E[], thread: IdleThread, keyOf: (waiting: E) => string): void {
  const own = thread.bound ? waiting.findIndex((each) => keyOf(each) === thread.lastHandler) : -1;
  if (own > 0) waiting.unshift(...waiting.splice(own, 1));
}

export interface StaleThread extends IdleThread {
  /** The load (moduleKey) of each plugin it has run. */
  readonly pluginLoads: ReadonlyMap<string, number>;
}

interface WaitingTask {
  task: { pluginId: string; handlerId: string; moduleKey?: number };
}

/**
 * For a thread left stale by a reload or an unregister: the first waiting task of a load it has
 * that is no longer current (called before the change), taken out of `waiting`. A backlog of
 * those runs on the threads that have its modules; each would otherwise start a thread of its own
 * and leave it stale in turn.
 */
export function oldLoadFirst<E extends WaitingTask>(waiting: E[], thread: StaleThread, currentLoad: (pluginId: string) => number | undefined): E | undefined {
  const i = waiting.findIndex(({ task }) => ofOldLoad(task, thread, currentLoad));
  return i < 0 ? undefined : waiting.splice(i, 1)[0];
}

/** `task` is of a load `thread` has that is no longer current, and it would not decline it (oldLoadFirst). */
export function ofOldLoad(task: WaitingTask['task'], thread: StaleThread, currentLoad: (pluginId: string) => number | undefined): boolean {
  if (task.moduleKey === undefined || thread.pluginLoads.get(task.pluginId) !== task.moduleKey || currentLoad(task.pluginId) === task.moduleKey) return false;
  return !thread.bound || handlerKey(task) === thread.lastHandler;
}
