import { LiveMap } from '@kb-labs/plugin-execution-core/backend-kit';
import type { WorkerExecution } from './worker-execution.js';

/**
 * The executions on a worker, by caller and id (executionKey), in the order they came. Nearly
 * always one per key. A task delivered again while its first delivery is still here (that one's
 * start unanswered: the start lost in a reconnection, or a consumer's `ack_wait` shorter than the
 * wait for the answer) is a second one under the same key, and the one its caller accepts may be
 * either: what the caller sends under the key (a cancel, a call's reply, the input) goes to each,
 * and a drain or close counts and stops each.
 */
export class WorkerExecutions {
  /** The first execution under each key. */
  readonly #first = new LiveMap<WorkerExecution>();
  /** The later deliveries of a key's task while its first is here (rare: empty almost always). */
  readonly #later = new LiveMap<WorkerExecution[]>();

  add(execution: WorkerExecution): void {
    if (!this.#first.has(execution.key)) return void this.#first.set(execution.key, execution);
    const later = this.#later.get(execution.key);
    if (later) later.push(execution);
    else this.#later.set(execution.key, [execution]);
  }

  /** It is over here: the next delivery under its key, if any, is first in its place. */
  delete(execution: WorkerExecution): void {
    const { key } = execution;
    const later = this.#later.get(key);
    if (this.#first.get(key) === execution) {
      const next = later?.shift();
      if (next) this.#first.set(key, next);
      else this.#first.delete(key);
    } else if (later?.includes(execution)) later.splice(later.indexOf(execution), 1);
    if (later?.length === 0) this.#later.delete(key);
  }

  /** The first execution under `key`. */
  first(key: string): WorkerExecution | undefined {
    return this.#first.get(key);
  }

  /** `each` called with every execution under `key`, the first first. */
  forKey(key: string, each: (execution: WorkerExecution) => void): void {
    const first = this.#first.get(key);
    if (!first) return;
    each(first);
    if (this.#later.size > 0) for (const later of this.#later.get(key) ?? []) each(later);
  }

  /** Whether its caller accepted another delivery of `execution`'s task here. */
  acceptedOther(execution: WorkerExecution): boolean {
    let accepted = false;
    this.forKey(execution.key, (each) => (accepted ||= each !== execution && each.taskId === execution.taskId && each.accepted));
    return accepted;
  }

  /** Its handlers' calls waiting for their replies, across every execution under `key`. */
  callsPending(key: string): number {
    let pending = 0;
    this.forKey(key, (execution) => (pending += execution.callsPending));
    return pending;
  }

  /** Every execution here. */
  values(): WorkerExecution[] {
    const all = this.#first.values();
    if (this.#later.size > 0) for (const later of this.#later.values()) all.push(...later);
    return all;
  }
}
