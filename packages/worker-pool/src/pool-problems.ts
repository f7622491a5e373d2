import { setTimeout } from '@kb-labs/plugin-execution-core/backend-kit';
import { STOP_WITHIN_MS, STUCK_WARNING_AFTER_MS } from './thread-deadlines.js';

/** Start failures since the last thread that started, and the last one's message. */
export interface StartFailures {
  streak: number;
  last: string;
}

/** Why the pool is unhealthy (health().problems): threads that fail to start, threads that could not be stopped. */
export function poolProblems(failing: StartFailures, abandoned: number, stuckInPlace: number, maxThreads: number): string[] {
  const problems = failing.streak > 0 ? [`worker threads fail to start (the last ${failing.streak} did): ${failing.last}`] : [];
  if (abandoned > 0) problems.push(`${stuckThreads(abandoned)}: the host process cannot exit until they do`);
  if (stuckInPlace > 0) {
    const which = stuckInPlace === 1 ? 'another is stuck the same way and keeps its place' : `${stuckInPlace} more are stuck the same way and keep their places`;
    problems.push(`${which} (no more than maxThreads, ${maxThreads}, are abandoned): executions wait for ${stuckInPlace === 1 ? 'it' : 'them'}`);
  }
  return problems;
}

/** Why an execution had no thread yet (for the TIMEOUT of one that never started). */
export function unstartedReason(failing: StartFailures, stuckInPlace: number): string {
  if (failing.streak > 0) return `worker threads fail to start: ${failing.last}`;
  if (stuckInPlace > 0) {
    return `it waited for a worker thread: ${stuckInPlace === 1 ? 'one is' : `${stuckInPlace} are`} stuck in a synchronous call and ${stuckInPlace === 1 ? 'keeps its place' : 'keep their places'} (see health())`;
  }
  return 'it waited for a worker thread to start';
}

export function stuckThreads(count: number): string {
  const subject = count === 1 ? 'a worker thread' : `${count} worker threads`;
  return `${subject} did not exit within ${STOP_WITHIN_MS} ms of being terminated: ${count === 1 ? 'its handler, or a Worker it started, is' : 'their handlers, or Workers they started, are'} in a synchronous call that no terminate interrupts (a FIFO nobody writes to, execSync of a long command, one call of a JavaScript built-in over a huge array-like …), or waits for work it left running on Node's thread pool (a crypto.pbkdf2 or scrypt of a high cost, zlib over a huge buffer: a thread exits only once that work has ended), or still freeing a heap of gigabytes`;
}

let warnedStuck = false;

/**
 * A thread was abandoned, another taking its place: KB_PLUGIN_THREAD_STUCK, said once per process,
 * and only if it is still there (`stillThere()`) a while later: one freeing a heap of gigabytes
 * also outlasts STOP_WITHIN_MS, and goes within seconds.
 */
export function warnStuckLater(stillThere: () => boolean): void {
  if (warnedStuck) return;
  setTimeout(() => {
    if (warnedStuck || !stillThere()) return;
    warnedStuck = true;
    process.emitWarning(`${stuckThreads(1)}; another took its place. The host process cannot exit until that call returns, or that work ends (Node waits for every thread on its way out). Said once per process.`, {
      code: 'KB_PLUGIN_THREAD_STUCK',
    });
  }, STUCK_WARNING_AFTER_MS).unref();
}
