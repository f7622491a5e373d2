import type { WorkerCrashedError } from '@kb-labs/plugin-execution-core';
import { shownStderrEnd } from './crash.js';

/**
 * Children that failed to start, in a row (for health().problems): an execPath that cannot start,
 * bubblewrap that cannot set a sandbox up, a host out of processes or descriptors. Each failure
 * fails one execution; without this, health() said nothing while every execution failed so.
 * A child that starts ends the streak.
 */
export class StartFailures {
  #streak = 0;
  #last = '';

  /** A child that never became ready, `error` its execution's WORKER_CRASHED. */
  failed(error: WorkerCrashedError): void {
    this.#streak++;
    this.#last = howItFailed(error);
  }

  started(): void {
    this.#streak = 0;
  }

  get problem(): string | undefined {
    return this.#streak > 0 ? `child processes fail to start (the last ${this.#streak === 1 ? 'one did' : `${this.#streak} did`}): ${this.#last}` : undefined;
  }
}

/** The crash's first line, and the last line of the stderr it quotes (shownStderrEnd, as its message does). */
function howItFailed(error: WorkerCrashedError): string {
  const first = error.message.split('\n', 1)[0] ?? '';
  const { stderrTail } = error.details as { stderrTail?: unknown };
  const lines = typeof stderrTail === 'string' ? shownStderrEnd(stderrTail).split('\n') : [];
  const stderr = lines.filter((line) => line.trim() !== '').at(-1)?.trim();
  return stderr && !first.includes(stderr) ? `${first} (its stderr ends: ${stderr})` : first;
}
