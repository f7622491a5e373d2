import { ERROR_CODES, HTTP_STATUS_BY_CODE, httpStatusOf } from '@kb-labs/plugin-execution-core';
import { describe, expect, it } from 'vitest';

describe('HTTP statuses of error codes', () => {
  it('gives every known code a status, client errors 4xx and server-side failures 5xx', () => {
    expect(Object.keys(HTTP_STATUS_BY_CODE).sort()).toEqual([...ERROR_CODES].sort());
    expect(httpStatusOf('TIMEOUT')).toBe(504);
    expect(httpStatusOf('QUEUE_FULL')).toBe(429);
    expect(httpStatusOf('PERMISSION_DENIED')).toBe(403);
    expect(httpStatusOf('HANDLER_NOT_FOUND')).toBe(404);
    expect(httpStatusOf('VALIDATION_ERROR')).toBe(400);
    expect(httpStatusOf('ABORTED')).toBe(499);
    expect(httpStatusOf('SHUTTING_DOWN')).toBe(503);
    expect(httpStatusOf('WORKER_CRASHED')).toBe(502);
    expect(httpStatusOf('HANDLER_ERROR')).toBe(500);
  });

  it('is the table docs/errors.md gives, code by code', () => {
    expect({ ...HTTP_STATUS_BY_CODE }).toEqual({
      VALIDATION_ERROR: 400,
      PERMISSION_DENIED: 403,
      HANDLER_NOT_FOUND: 404,
      QUEUE_FULL: 429,
      ABORTED: 499,
      HANDLER_ERROR: 500,
      WORKSPACE_ERROR: 500,
      INTERNAL_ERROR: 500,
      BACKEND_NOT_INSTALLED: 500,
      WORKER_CRASHED: 502,
      SHUTTING_DOWN: 503,
      TIMEOUT: 504,
    });
    for (const code of ERROR_CODES) expect(httpStatusOf(code)).toBe(HTTP_STATUS_BY_CODE[code]);
  });

  it('answers 500 for a code this version does not know, and for inherited names', () => {
    expect(httpStatusOf('SOME_FUTURE_CODE')).toBe(500);
    expect(httpStatusOf('toString')).toBe(500);
    expect(httpStatusOf('__proto__')).toBe(500);
  });
});
