import { checkTimeoutOptions } from '@kb-labs/plugin-execution-core/host-kit';
import { DEFAULTS } from './options.js';

/** `unmount()`'s options, checked as `backend.shutdown()`'s are (core's checkTimeoutOptions): nothing is unmounted on a bad one. */
export function checkUnmountOptions(options: unknown): { timeoutMs: number } {
  return checkTimeoutOptions(options, 'unmount()', DEFAULTS.unmountTimeoutMs);
}
