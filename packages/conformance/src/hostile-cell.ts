/** One cell of the hostile-plugin matrix: a misbehaving handler, what each backend does about it, and how to check that. */
import type { ExecutionEvent, ExecutionResult, LogEntry } from '@kb-labs/plugin-execution-core';

/**
 * The backends the matrix has a column for (a new backend adds its column to every row). `queue`
 * is the queue backend with its workers on the subprocess backend (bubblewrap where it runs): a
 * worker's local backend is what defends it, so its column follows subprocess's, apart from what
 * the queue itself limits.
 */
export type MatrixBackend = 'in-process' | 'worker-pool' | 'subprocess' | 'queue';

/** The matrix's columns, in its order. */
export const MATRIX_BACKENDS: readonly MatrixBackend[] = ['in-process', 'worker-pool', 'subprocess', 'queue'];

export type Code = 'ok' | 'TIMEOUT' | 'WORKER_CRASHED' | 'HANDLER_ERROR' | 'VALIDATION_ERROR' | 'PERMISSION_DENIED';

/** What a backend does for a cell: an outcome (any of `codes`), or an honest "cannot defend". */
export type CellOutcome = { codes: Code[]; note?: string } | { undefended: string };

export interface MatrixCell {
  id: string;
  title: string;
  handler: string;
  /** The handler's input, unless `prepare` gives one for the run. */
  input?: unknown;
  timeoutMs?: number;
  /** Extra backend options for this cell (e.g. a small heap). */
  options?: Record<string, unknown>;
  /** Extra options for one backend only, applied over `options` (e.g. a subprocess-only `allowRead`). */
  backendOptions?: Partial<Record<MatrixBackend, Record<string, unknown>>>;
  /**
   * Defended (where it is) only by an OS sandbox: the test first requires
   * `health().isolation.active === 'bubblewrap'` and fails without it; off Linux it is skipped.
   */
  needsSandbox?: boolean;
  /** Per-run set-up once the backend exists (and, for `needsSandbox`, is confirmed sandboxed). */
  prepare?: (env: CellEnv) => CellRun | Promise<CellRun>;
  /** Extra check on the result. */
  check?: (result: ExecutionResult, env: CellEnv) => void | Promise<void>;
  /** Check once the backend has shut down: what the handler did outside its grants left nothing behind. */
  checkAfterShutdown?: (env: CellEnv) => void | Promise<void>;
  expect: Record<MatrixBackend, CellOutcome>;
}

export interface CellEnv {
  /** The column the backend is held to: its own type for a built-in backend, else the one its author named. */
  type: MatrixBackend;
  /** The type of the backend the cell runs on (`backend.type`). */
  name: string;
  /** A host folder outside every grant, holding `precious.txt` ("keep me"). */
  outside: string;
  /** The backend's children were confirmed to run under bubblewrap. */
  sandboxed: boolean;
}

/** What `prepare` set up for one run: the input, an event hook, the checks and the teardown. */
export interface CellRun {
  input: unknown;
  onEvent?: (event: ExecutionEvent) => void;
  onLog?: (line: LogEntry) => void;
  verify?: (result: ExecutionResult) => void | Promise<void>;
  close?: () => unknown;
}

export const ok = (note?: string): CellOutcome => ({ codes: ['ok'], ...(note ? { note } : {}) });
export const code = (c: Code, note?: string): CellOutcome => ({ codes: [c], ...(note ? { note } : {}) });
export const codes = (cs: Code[], note: string): CellOutcome => ({ codes: cs, note });
export const undefended = (why: string): CellOutcome => ({ undefended: why });
export const all = (outcome: CellOutcome): Record<MatrixBackend, CellOutcome> => ({ 'in-process': outcome, 'worker-pool': outcome, subprocess: outcome, queue: outcome });
/** Defended by the backends that run the handler outside the host's thread. */
export const isolating = (inProcess: string, outcome: CellOutcome): Record<MatrixBackend, CellOutcome> => ({
  'in-process': undefended(inProcess),
  'worker-pool': outcome,
  subprocess: outcome,
  queue: outcome,
});
