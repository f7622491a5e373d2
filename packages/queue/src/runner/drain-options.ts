import { checkTimeoutOptions } from '@kb-labs/plugin-execution-core/backend-kit';

/** How long a drain lets running executions finish when its options give no `timeoutMs`. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;

/** `drain()`'s options, checked as `backend.shutdown()`'s are (core's checkTimeoutOptions): nothing is drained on a bad one. */
export function checkDrainOptions(options: unknown): { timeoutMs: number } {
  return checkTimeoutOptions(options, 'drain()', DEFAULT_DRAIN_TIMEOUT_MS);
}
