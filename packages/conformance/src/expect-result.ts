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
