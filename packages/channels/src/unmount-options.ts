import { MAX_TIMER_MS, nearest, validationError } from '@kb-labs/plugin-execution-core/host-kit';
import { DEFAULTS } from './options.js';

/**
 * `unmount()`'s options, checked as `backend.shutdown()`'s are: a `timeoutMs` that is not a whole
 * number of ms from 0 to MAX_TIMER_MS (Infinity or 2 ** 31 would reach setTimeout as 1 ms and cut
 * disconnect handlers short at once; a string would be compared as NaN) or a misspelt option
 * (`timeout` silently meaning 5 s) is a ValidationError, and nothing is unmounted.
 */
export function checkUnmountOptions(options: unknown): { timeoutMs: number } {
  // null as "no options", as shutdown() takes it.
  if (options === undefined || options === null) return { timeoutMs: DEFAULTS.unmountTimeoutMs };
  const issues: Array<{ path: string; message: string }> = [];
  if (typeof options !== 'object' || Array.isArray(options)) {
    issues.push({ path: '(options)', message: `must be an object such as { timeoutMs: 5000 }, got ${Array.isArray(options) ? 'an array' : typeof options}` });
  } else {
    const { timeoutMs } = options as { timeoutMs?: unknown };
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > MAX_TIMER_MS)) {
      const given = typeof timeoutMs === 'string' ? JSON.stringify(timeoutMs) : String(timeoutMs);
      issues.push({ path: 'timeoutMs', message: `must be a whole number of ms from 0 to ${MAX_TIMER_MS}, got ${given}` });
    }
    for (const key of Object.keys(options)) {
      if (key !== 'timeoutMs') issues.push({ path: key, message: `unknown option${nearest(key, ['timeoutMs']) ? '; did you mean "timeoutMs"?' : ''}` });
    }
  }
  if (issues.length) throw validationError('Invalid unmount() options', issues, { phase: 'options' });
  return { timeoutMs: (options as { timeoutMs?: number }).timeoutMs ?? DEFAULTS.unmountTimeoutMs };
}
