import { ofOldLoad, type StaleThread } from './idle-choice.js';
import { clearTimeout, setTimeout } from '@kb-labs/plugin-execution-core/backend-kit';

/** How long a stale thread with nothing of its old load waiting waits for one more before it goes. */
const STALE_WAIT_MS = 100;

interface WaitingThread extends StaleThread {
  readonly endedBy: unknown;
}

/**
 * Stale threads (left so by a reload or an unregister) waiting a little for one more execution of
 * their old load: the backend hands the next one over only once the last one's workspace is
 * removed, and each such execution would otherwise start a thread of its own (ThreadPool).
 */
export class StaleWait<T extends WaitingThread> {
  readonly #waiting = new Map<T, NodeJS.Timeout>();

  /** `thread` waits; `giveUp` is called after STALE_WAIT_MS unless it was taken or forgotten first. */
  wait(thread: T, giveUp: () => void): void {
    this.forget(thread);
    this.#waiting.set(thread, setTimeout(() => this.#waiting.delete(thread) && giveUp(), STALE_WAIT_MS).unref());
  }

  /** A waiting thread among `candidates` that has the old load `task` is of, no longer waiting. */
  take(task: { pluginId: string; handlerId: string; moduleKey?: number }, accepts: (thread: T) => boolean, currentLoad: (pluginId: string) => number | undefined): T | undefined {
    for (const thread of this.#waiting.keys()) {
      if (thread.endedBy || !accepts(thread) || !ofOldLoad(task, thread, currentLoad)) continue;
      this.forget(thread);
      return thread;
    }
    return undefined;
  }

  /** It goes (or was taken): no longer waiting. */
  forget(thread: T): void {
    clearTimeout(this.#waiting.get(thread));
    this.#waiting.delete(thread);
  }
}
