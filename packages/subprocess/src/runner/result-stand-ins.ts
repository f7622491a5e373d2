import { serializeError, unserializableError, type RunnerResult, type SerializedError } from '@kb-labs/plugin-execution-core/runner';

/** Characters of a message kept by the first stand-in, and by the last (the one that fits the smallest frame limit, 1024 bytes). */
const KEPT_CHARS = 2000;
const LAST_KEPT_CHARS = 120;
/** Details kept by the last stand-in only when this small (as JSON). */
const LAST_DETAILS_CHARS = 200;

/**
 * What goes instead of a result that cannot be sent whole (past `maxFrameBytes`, or holding what
 * structured clone refuses), each smaller than the one before, until one fits: a success becomes
 * the VALIDATION_ERROR that says why; a failure keeps its code, class and the start of its
 * message (a handler's large error is still its HANDLER_ERROR, as on the other backends), its
 * stack, props and the rest dropped. The last fits the smallest frame limit.
 */
export function resultStandIns(result: RunnerResult, whyNot: unknown): RunnerResult[] {
  const failure = result.ok ? serializeError(unserializableError('handler result', whyNot, result.data)) : result.error;
  const said = `cut to fit: ${(whyNot as Error)?.message ?? String(whyNot)}`;
  const tiers = [...(result.ok ? [failure] : []), cut(failure, KEPT_CHARS, said, true), cut(failure, LAST_KEPT_CHARS, said, false)];
  return tiers.map((error) => ({ type: 'result', ok: false, error }));
}

function cut(error: SerializedError, chars: number, said: string, withCause: boolean): SerializedError {
  const message = error.message.length > chars ? `${error.message.slice(0, chars)}… (${said.slice(0, chars)})` : error.message;
  const details = error.details && (withCause || JSON.stringify(error.details).length <= LAST_DETAILS_CHARS) ? error.details : undefined;
  const cause = withCause && error.cause && '$error' in error.cause ? cut(error.cause, chars, said, false) : undefined;
  return { $error: 1, name: error.name, message, ...(error.code !== undefined ? { code: error.code } : {}), ...(details ? { details } : {}), ...(cause ? { cause } : {}) };
}
