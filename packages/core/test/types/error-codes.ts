// Compile-time checks of the error types, run by types.test.ts with `tsc --noEmit`: every
// `@ts-expect-error` below must meet an error, and everything else must compile.
import { HandlerNotFoundError, TimeoutError, type ErrorCode, type ExecutionResult, type WorkerCrashedError } from '@kb-labs/plugin-execution-core';

declare const result: ExecutionResult<{ count: number }>;

if (result.ok) {
  const count: number = result.data.count;
  void count;
} else {
  // @ts-expect-error a misspelt code is not one of the codes
  if (result.error.code === 'TIMEOUTT') void 0;

  if (result.error.code === 'TIMEOUT') {
    // Narrowed to TimeoutError, with its typed details.
    const error: TimeoutError = result.error;
    const limit: number = error.details.timeoutMs;
    void limit;
  }

  if (result.error.code === 'WORKER_CRASHED') {
    const crashed: WorkerCrashedError = result.error;
    // @ts-expect-error the crash reasons are one closed set
    if (crashed.details.reason === 'handshake') void 0;
    void crashed;
  }

  if (result.error.code === 'VALIDATION_ERROR') {
    for (const issue of result.error.details.issues ?? []) {
      const where: string = issue.path;
      void where;
    }
  }

  // @ts-expect-error before narrowing, details is not a TimeoutError's
  const unnarrowed: number = result.error.details.timeoutMs;
  void unnarrowed;
}

// @ts-expect-error ErrorCode is the closed union of codes
const bad: ErrorCode = 'NOT_A_CODE';
void bad;

// @ts-expect-error a TimeoutError's details need the limit
new TimeoutError('late', { details: { pluginId: 'p' } });

// A class whose code has required details takes them (a TimeoutError without timeoutMs would lie to its reader); one whose details are all optional does not need them.
// @ts-expect-error details.timeoutMs is required
new TimeoutError('late');
new TimeoutError('late', { details: { timeoutMs: 5 } });
new HandlerNotFoundError('gone');
