import { isExecutionError, type ErrorCode, type ErrorOf, type ExecutionMeta, type ExecutionResult } from '@kb-labs/plugin-execution-core';
import { expect } from 'vitest';

export function expectOk<T>(result: ExecutionResult<T>): asserts result is Extract<ExecutionResult<T>, { ok: true }> {
  if (!result.ok) {
    throw new Error(`expected ok, got ${result.error.code}: ${result.error.message}`, { cause: result.error });
  }
}

/** Asserts a failure with `code`, and narrows `result.error` to that code's class (typed `details`). */
export function expectError<T, C extends ErrorCode>(result: ExecutionResult<T>, code: C): asserts result is { ok: false; error: ErrorOf<C>; meta: ExecutionMeta } {
  if (result.ok) throw new Error(`expected ${code}, got ok with ${JSON.stringify(result.data)?.slice(0, 200)}`);
  expect(result.error.code, result.error.message).toBe(code);
  expect(isExecutionError(result.error)).toBe(true);
}

/** Poll until `check` is true (bounded), for states that are reached asynchronously. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Options a call that waits at most `timeoutMs` cannot take (`shutdown()`, a mount's `unmount()`,
 * a worker's `drain()`), each with what its VALIDATION_ERROR says: core's one check of them.
 */
export const TIMEOUT_OPTION_REFUSALS: ReadonlyArray<readonly [unknown, string]> = [
  [{ timeoutMs: Number.NaN }, 'timeoutMs: must be a whole number of ms from 0 to 2147483647, got NaN'],
  [{ timeoutMs: Infinity }, 'timeoutMs: must be a whole number of ms from 0 to 2147483647, got Infinity'],
  [{ timeoutMs: 2 ** 31 }, 'timeoutMs: must be a whole number of ms from 0 to 2147483647, got 2147483648'],
  [{ timeoutMs: -1 }, 'timeoutMs: must be a whole number of ms from 0 to 2147483647, got -1'],
  [{ timeoutMs: '5000' }, 'timeoutMs: must be a whole number of ms from 0 to 2147483647, got "5000"'],
  [{ timeout: 5000 }, 'timeout: unknown option; did you mean "timeoutMs"?'],
  ['5000', '(options): must be an object such as { timeoutMs: 5000 }, got string'],
  [
    {
      get timeoutMs(): number {
        throw new Error('not now');
      },
    },
    'timeoutMs: could not be read: not now',
  ],
  [
    {
      // What no string can be made of (before, a TypeError "Cannot convert object to primitive value" instead of this).
      get timeoutMs(): number {
        throw Object.create(null);
      },
    },
    'timeoutMs: could not be read: a non-Error object: {}',
  ],
  [new Proxy({}, { ownKeys: () => { throw new Error('no keys'); } }), '(options): could not be read: no keys'],
];
