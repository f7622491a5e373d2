/**
 * The hostile-plugin matrix: what each backend does when a plugin misbehaves. One table, one test
 * per cell per backend. A cell a backend cannot defend is a skipped test whose name says so and
 * names the backend to pick instead (docs/reliability.md has the same table). The rows live in
 * ./hostile-rows.ts and, for those only an OS sandbox defends, ./hostile-sandbox-rows.ts; each
 * cell carries its own input and checks, and the runner here runs them all the same way.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectOk } from './expect-result.js';
import { BASIC, HOSTILE, fixturePlugins } from './fixtures.js';
import { MATRIX_BACKENDS, type CellEnv, type CellRun, type Code, type MatrixBackend, type MatrixCell } from './hostile-cell.js';
import { HOST_CANARY_ENV, HOSTILE_ROWS } from './hostile-rows.js';
import { SANDBOX_ROWS, requireBubblewrap, sandboxPlatform } from './hostile-sandbox-rows.js';
import type { BackendFactory } from './suite-context.js';

export { MATRIX_BACKENDS } from './hostile-cell.js';
export type { CellEnv, CellOutcome, CellRun, Code, MatrixBackend, MatrixCell } from './hostile-cell.js';
export { HOST_CANARY_ENV } from './hostile-rows.js';
export { SANDBOX_ROWS, goneWithin, grandchildMarker, newToken, processesWithMarker, requireBubblewrap, sandboxPlatform } from './hostile-sandbox-rows.js';

export const HOSTILE_MATRIX: MatrixCell[] = [...HOSTILE_ROWS, ...SANDBOX_ROWS];

interface MatrixDirs {
  /** The workspace root of every backend of the matrix. */
  root: string;
  /** A host folder outside every grant. */
  outside: string;
}

/** How a backend that is not one of the matrix's columns is held to it. */
export interface HostileMatrixOptions {
  /**
   * The built-in backend whose column yours is held to: the one whose defences it has (a
   * backend whose handlers run on the host's thread: `in-process`; in a thread of their own:
   * `worker-pool`; in a child process: `subprocess`). Its cells' options for that column
   * (`backendOptions`) are given to your backend too. Needed unless `type` is a built-in one.
   */
  column?: MatrixBackend;
}

/**
 * Run every cell of the matrix on one backend: `type` is `backend.type`; `create`, as
 * `describeConformance`'s, makes one from the options a cell gives.
 */
export function describeHostileMatrix(type: string, create: BackendFactory, options: HostileMatrixOptions = {}): void {
  const column = matrixColumn(type, options);
  describe(`hostile matrix: ${type}${column === type ? '' : ` (the ${column} column)`}`, () => {
    const dirs: MatrixDirs = { root: '', outside: '' };
    const previousCanary = process.env[HOST_CANARY_ENV];

    beforeAll(async () => {
      dirs.root = await mkdtemp(path.join(os.tmpdir(), `kb-hostile-${type.replace(/[^\w.-]/g, '_')}-`));
      dirs.outside = await mkdtemp(path.join(os.tmpdir(), 'kb-hostile-outside-'));
      await writeFile(path.join(dirs.outside, 'precious.txt'), 'keep me');
      process.env[HOST_CANARY_ENV] = 'host-secret';
    });

    afterAll(async () => {
      if (previousCanary === undefined) delete process.env[HOST_CANARY_ENV];
      else process.env[HOST_CANARY_ENV] = previousCanary;
      await rm(dirs.root, { recursive: true, force: true });
      await rm(dirs.outside, { recursive: true, force: true });
    });

    for (const cell of HOSTILE_MATRIX) {
      const outcome = cell.expect[column];
      if ('undefended' in outcome) {
        it.skip(`${cell.title} — not defended on ${type}: ${outcome.undefended}`, () => {});
        continue;
      }
      const name = `${cell.title} → ${outcome.codes.join(' or ')}${outcome.note ? ` (${outcome.note})` : ''}`;
      if (cell.needsSandbox && !sandboxPlatform) {
        it.skip(`${name} — needs the bubblewrap OS sandbox, which runs on Linux only (this is ${process.platform})`, () => {});
        continue;
      }
      // Past the longest time limit of a cell (the event flood's), with room for the run after it.
      const env = { type: column, name: type };
      it(name, () => runCell(env, create, cell, outcome.codes, dirs), 180_000);
    }
  });
}

/** The column `type` is held to; a type of no column, or a column the matrix does not have, is refused at once, naming the columns. */
function matrixColumn(type: string, options: HostileMatrixOptions): MatrixBackend {
  const known = MATRIX_BACKENDS.join(', ');
  const column = options.column ?? MATRIX_BACKENDS.find((builtIn) => builtIn === type);
  if (column === undefined) {
    throw new TypeError(`describeHostileMatrix: "${type}" is not a column of the matrix (${known}): give { column } naming the built-in backend whose defences yours has`);
  }
  if (!MATRIX_BACKENDS.includes(column)) throw new TypeError(`describeHostileMatrix: column "${String(column)}" is not one of ${known}`);
  return column;
}

/** One cell on one backend: the outcome, the cell's checks, a healthy backend after it, nothing leaked. */
async function runCell(target: Pick<CellEnv, 'type' | 'name'>, create: BackendFactory, cell: MatrixCell, codes: Code[], dirs: MatrixDirs): Promise<void> {
  const backend: IExecutionBackend = create({
    plugins: [fixturePlugins.basic, fixturePlugins.hostile],
    workspace: { root: dirs.root },
    ...cell.options,
    ...cell.backendOptions?.[target.type],
  });
  expect(backend.type).toBe(target.name);
  const env: CellEnv = { ...target, outside: dirs.outside, sandboxed: cell.needsSandbox === true };
  let run: CellRun | undefined;
  try {
    if (cell.needsSandbox) await requireBubblewrap(backend);
    run = await cell.prepare?.(env);
    const result = await backend.execute(
      { pluginId: HOSTILE, handlerId: cell.handler, input: run ? run.input : cell.input },
      { timeoutMs: cell.timeoutMs ?? 10_000, ...(run?.onEvent ? { onEvent: run.onEvent } : {}), ...(run?.onLog ? { onLog: run.onLog } : {}) },
    );
    const got = result.ok ? 'ok' : result.error.code;
    expect(codes, result.ok ? 'ok' : `${result.error.code}: ${result.error.message}`).toContain(got);
    await cell.check?.(result, env);
    await run?.verify?.(result);
    // The host is alive (we are running), the next execution on the same backend succeeds…
    const next = await backend.execute({ pluginId: BASIC, handlerId: 'echo', input: 'next' }, { timeoutMs: 20_000 });
    expectOk(next);
    expect(next.data).toBe('next');
    expect((await backend.stats()).active).toBe(0);
  } finally {
    await run?.close?.();
    await backend.shutdown({ timeoutMs: 2000 });
  }
  // …and nothing is leaked: no workspace left, nothing the handler did outside its grants remains.
  expect(await readdir(dirs.root)).toEqual([]);
  await cell.checkAfterShutdown?.(env);
}
