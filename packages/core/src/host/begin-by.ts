import { AbortedError, InternalError, ValidationError, type KnownExecutionError } from '../errors.js';
import type { RunnerTask } from '../runner/handler-runtime.js';
import { wallClockMs } from '../wall-clock.js';
import { thrownText } from '../wire-value.js';
import type { ExecuteOptions } from './request.js';

/**
 * The time a handler must begin by (ExecuteOptions.beginBy), for its runner's task. One the option
 * fails to give (it throws, or gives no number) is past, so that the runner asks (beginRefusal),
 * which says why.
 */
export function beginByOf(options: ExecuteOptions): number {
  try {
    const by = options.beginBy?.();
    return isTime(by) ? by : Number.NEGATIVE_INFINITY;
  } catch {
    return Number.NEGATIVE_INFINITY;
  }
}

/**
 * Why the handler of `task`, whose runner is ready to begin it now, may not begin (undefined: it
 * may): the time `beginBy` gives has passed, or `beginBy` gives none. Said as what the host saw,
 * and ABORTED `running` as any stop once a runner took it: a runner whose plugin writes to its
 * channel could ask after its handler began.
 */
export function beginRefusal(beginBy: () => number, task: RunnerTask): KnownExecutionError | undefined {
  const handler = `Handler "${task.handlerId}" of plugin "${task.pluginId}"`;
  let by: unknown;
  try {
    by = beginBy();
  } catch (error) {
    const what = thrownText(error).slice(0, 500);
    return new InternalError(`${handler} was not begun: its execute() option beginBy threw (${what})`, { details: { where: 'beginBy', what }, cause: error });
  }
  if (!isTime(by)) {
    const message = `must return a number (milliseconds since the epoch), returned ${kindOf(by)}`;
    return new ValidationError(`Invalid execute() options: beginBy ${message}`, { details: { phase: 'options', issues: [{ path: 'beginBy', message }] } });
  }
  const late = wallClockMs() - by;
  if (late <= 0) return undefined;
  return new AbortedError(`${handler} was stopped: its runner was ready to begin it ${Math.round(late)} ms after the time execute() option beginBy gave`, { details: { phase: 'running' } });
}

/** What `beginBy` must give: a number of milliseconds (NaN is none). */
function isTime(value: unknown): value is number {
  return typeof value === 'number' && !Number.isNaN(value);
}

/** What a callback returned, named for a message: `a promise` for an async function's. */
function kindOf(value: unknown): string {
  if (value === null || Number.isNaN(value)) return String(value);
  let isPromise = false;
  try {
    isPromise = typeof (value as { then?: unknown } | undefined)?.then === 'function';
  } catch {
    // A value that cannot be read (a revoked Proxy): not a promise; it is refused as what it is.
  }
  return isPromise ? 'a promise' : typeof value;
}
