import { isErrorCode, type ErrorCode } from './errors.js';

/**
 * The HTTP status an HTTP host answers with for each error code: what the code means to a
 * client (its request was bad, refused, too slow, or the server failed), one table for every host.
 */
export const HTTP_STATUS_BY_CODE = Object.freeze({
  VALIDATION_ERROR: 400,
  PERMISSION_DENIED: 403,
  HANDLER_NOT_FOUND: 404,
  QUEUE_FULL: 429,
  /** Client Closed Request (nginx's): the caller aborted. */
  ABORTED: 499,
  HANDLER_ERROR: 500,
  WORKSPACE_ERROR: 500,
  INTERNAL_ERROR: 500,
  BACKEND_NOT_INSTALLED: 500,
  WORKER_CRASHED: 502,
  SHUTTING_DOWN: 503,
  TIMEOUT: 504,
} as const satisfies Record<ErrorCode, number>);

/** The HTTP status for an error code; 500 for a code this version does not know (a newer remote worker's). */
export function httpStatusOf(code: string): number {
  return isErrorCode(code) ? HTTP_STATUS_BY_CODE[code] : 500;
}
