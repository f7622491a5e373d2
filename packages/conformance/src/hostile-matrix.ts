/**
 * The hostile-plugin matrix: what each backend does when a plugin misbehaves. One table, one test
 * per cell per backend. A cell a backend cannot defend is a skipped test whose name says so and
 * names the backend to pick instead (docs/reliability.md has the same table). The rows only an
 * OS sandbox defends live in ./hostile-sandbox-rows.ts and are part of the same table.
 */
import { lstat, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BackendType, ExecutionEvent, ExecutionResult, IExecutionBackend } from '@kb-labs/plugin-execution-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASIC, HOSTILE, fixturePlugins } from './fixtures.js';
import { SANDBOX_ROWS, requireBubblewrap, sandboxPlatform } from './hostile-sandbox-rows.js';
import { expectOk, type BackendFactory } from './index.js';

export { SANDBOX_ROWS, goneWithin, grandchildMarker, newToken, processesWithMarker, requireBubblewrap, sandboxPlatform } from './hostile-sandbox-rows.js';

export type Code = 'ok' | 'TIMEOUT' | 'WORKER_CRASHED' | 'HANDLER_ERROR' | 'VALIDATION_ERROR' | 'PERMISSION_DENIED';

/** What a backend does for a cell: an outcome (any of `codes`), or an honest "cannot defend". */
export type CellOutcome = { codes: Code[]; note?: string } | { undefended: string };

export interface MatrixCell {
  id: string;
  title: string;
  handler: string;
  input?: unknown;
  timeoutMs?: number;
  /** Extra backend options for this cell (e.g. a small heap). */
  options?: Record<string, unknown>;
  /** Extra options for one backend only, applied over `options` (e.g. a subprocess-only `allowRead`). */
  backendOptions?: Partial<Record<BackendType, Record<string, unknown>>>;
  /**
   * Defended (where it is) only by an OS sandbox: the test first requires
   * `health().isolation.active === 'bubblewrap'` and fails without it; off Linux it is skipped.
   */
  needsSandbox?: boolean;
  /** Per-run set-up once the backend exists (and, for `needsSandbox`, is confirmed sandboxed). */
  prepare?: (env: CellEnv) => Promise<CellRun>;
  /** Extra check on the result. */
  check?: (result: ExecutionResult, env: CellEnv) => void | Promise<void>;
  expect: Record<BackendType, CellOutcome>;
}

export interface CellEnv {
  /** A host folder outside every grant. */
  outside: string;
  /** The backend's children were confirmed to run under bubblewrap. */
  sandboxed: boolean;
}

/** What `prepare` set up for one run: the input, an event hook, the checks and the teardown. */
export interface CellRun {
  input: unknown;
  onEvent?: (event: ExecutionEvent) => void;
  verify?: (result: ExecutionResult) => void | Promise<void>;
  close?: () => unknown;
}

const ok = (note?: string): CellOutcome => ({ codes: ['ok'], ...(note ? { note } : {}) });
const code = (c: Code, note?: string): CellOutcome => ({ codes: [c], ...(note ? { note } : {}) });
const undefended = (why: string): CellOutcome => ({ undefended: why });
const all = (outcome: CellOutcome): Record<BackendType, CellOutcome> => ({ 'in-process': outcome, 'worker-pool': outcome, subprocess: outcome });
const isolating = (inProcess: string, outcome: CellOutcome): Record<BackendType, CellOutcome> => ({
  'in-process': undefended(inProcess),
  'worker-pool': outcome,
  subprocess: outcome,
});

export const HOST_CANARY_ENV = 'KB_HOSTILE_MATRIX_CANARY';

export const HOSTILE_MATRIX: MatrixCell[] = [
  {
    id: 'busy-loop',
    title: 'busy loop (while (true) {})',
    handler: 'busy-loop',
    timeoutMs: 300,
    expect: isolating('it blocks the host event loop; use worker-pool or subprocess', code('TIMEOUT', 'runner terminated and replaced')),
  },
  { id: 'never-resolves', title: 'never resolves', handler: 'never-resolves', timeoutMs: 200, expect: all(code('TIMEOUT')) },
  { id: 'resolves-late', title: 'resolves after the timeout', handler: 'resolves-late', input: { ms: 600 }, timeoutMs: 150, expect: all(code('TIMEOUT', 'the late result is dropped')) },
  { id: 'exit-0', title: 'process.exit(0)', handler: 'exit', input: { code: 0 }, expect: isolating('it ends the host process; use worker-pool or subprocess', code('WORKER_CRASHED')) },
  { id: 'exit-7', title: 'process.exit(7)', handler: 'exit', input: { code: 7 }, expect: isolating('it ends the host process; use worker-pool or subprocess', code('WORKER_CRASHED')) },
  {
    id: 'throw-in-timer',
    title: 'throw in a setTimeout',
    handler: 'throw-in-timer',
    expect: isolating("the host's own uncaughtException handling applies; use worker-pool or subprocess", code('WORKER_CRASHED')),
  },
  {
    id: 'unhandled-rejection',
    title: 'unhandled rejection',
    handler: 'unhandled-rejection',
    expect: isolating("the host's own unhandledRejection handling applies; use worker-pool or subprocess", code('WORKER_CRASHED')),
  },
  { id: 'throw-string', title: 'throw a string', handler: 'throw-value', input: { kind: 'string' }, expect: all(code('HANDLER_ERROR')) },
  { id: 'throw-number', title: 'throw a number', handler: 'throw-value', input: { kind: 'number' }, expect: all(code('HANDLER_ERROR')) },
  { id: 'throw-null', title: 'throw null', handler: 'throw-value', input: { kind: 'null' }, expect: all(code('HANDLER_ERROR')) },
  {
    id: 'throw-circular',
    title: 'throw an object with a circular reference',
    handler: 'throw-value',
    input: { kind: 'circular' },
    expect: all(code('HANDLER_ERROR')),
    check: (result) => {
      if (!result.ok) expect(result.error.message).toContain('Circular');
    },
  },
  { id: 'return-function', title: 'return a function', handler: 'return-value', input: { kind: 'function' }, expect: all(code('VALIDATION_ERROR')) },
  { id: 'return-symbol', title: 'return a symbol', handler: 'return-value', input: { kind: 'symbol' }, expect: all(code('VALIDATION_ERROR')) },
  {
    id: 'return-circular',
    title: 'return a circular object',
    handler: 'return-value',
    input: { kind: 'circular' },
    expect: all(ok('structured clone keeps the cycle')),
    check: (result) => {
      if (result.ok) expect((result.data as { self: unknown }).self).toBe(result.data);
    },
  },
  {
    id: 'return-bigint',
    title: 'return a BigInt',
    handler: 'return-value',
    input: { kind: 'bigint' },
    expect: all(ok()),
    check: (result) => {
      if (result.ok) expect(result.data).toEqual({ big: 2n ** 70n });
    },
  },
  {
    id: 'return-huge-string',
    title: 'return a 100 MB string',
    handler: 'return-value',
    input: { kind: 'huge-string', mb: 100 },
    timeoutMs: 60_000,
    expect: all(ok()),
    check: (result) => {
      if (result.ok) expect((result.data as string).length).toBe(100 * 1024 * 1024);
    },
  },
  {
    id: 'heap-oom',
    title: 'heap out of memory',
    handler: 'oom',
    timeoutMs: 60_000,
    options: { resourceLimits: { maxOldGenerationSizeMb: 64 } },
    expect: isolating('the host process dies; use worker-pool or subprocess', code('WORKER_CRASHED', 'details.reason is "oom"')),
    check: (result) => {
      if (!result.ok) expect(result.error.details).toMatchObject({ reason: 'oom' });
    },
  },
  {
    id: 'big-buffer',
    title: 'allocate a 256 MB Buffer',
    handler: 'big-buffer',
    input: { mb: 256 },
    timeoutMs: 30_000,
    expect: all(ok('Buffers live outside the V8 heap: not limited by any backend')),
  },
  {
    id: 'grandchild',
    title: 'spawn a grandchild that sleeps',
    handler: 'spawn-grandchild',
    input: { wait: false },
    expect: {
      'in-process': undefended("the grandchild is the host's own child and outlives the execution; use subprocess"),
      'worker-pool': undefended("threads share the host process: the grandchild is the host's child and outlives the execution; use subprocess"),
      subprocess: code('PERMISSION_DENIED', 'child processes need childProcess permission; granted ones die with the process group'),
    },
  },
  {
    id: 'stdout-spam',
    title: 'write 10 MB to stdout',
    handler: 'stdout-spam',
    input: { mb: 10 },
    timeoutMs: 60_000,
    expect: {
      'in-process': undefended("it writes to the host's own stdout; use worker-pool or subprocess"),
      'worker-pool': ok('captured line by line into onLog, capped'),
      subprocess: ok('captured line by line into onLog, capped'),
    },
  },
  {
    id: 'protocol-garbage',
    title: 'write garbage to the runner channel',
    handler: 'protocol-garbage',
    timeoutMs: 3000,
    expect: {
      'in-process': undefended('there is no channel: the handler runs in the host; use worker-pool or subprocess'),
      'worker-pool': { codes: ['WORKER_CRASHED', 'TIMEOUT'], note: 'forged messages are ignored or end the thread; the host is unaffected' },
      subprocess: code('WORKER_CRASHED', 'protocol error: the child is killed'),
    },
  },
  {
    id: 'read-env',
    title: "read the host's env",
    handler: 'read-env',
    input: { name: HOST_CANARY_ENV },
    expect: {
      'in-process': undefended("the handler shares the host's process.env; use subprocess"),
      'worker-pool': ok('a thread sees only the names the handler declares in permissions.env'),
      subprocess: ok('only allow-listed names reach the child'),
    },
    check: (result) => {
      if (result.ok && result.meta.backend !== 'in-process') {
        expect((result.data as { value: unknown }).value).toBeNull();
        expect((result.data as { names: string[] }).names).not.toContain(HOST_CANARY_ENV);
      }
    },
  },
  {
    id: 'write-outside',
    title: 'write outside the workspace',
    handler: 'write-outside',
    expect: {
      'in-process': undefended('the handler has the host file system; use subprocess'),
      'worker-pool': undefended('threads share the host file system; use subprocess'),
      subprocess: code('PERMISSION_DENIED', 'the permission model allows writes to the workspace only'),
    },
  },
  {
    id: 'symlink-release',
    title: 'symlink in the workspace to a host file, then release',
    handler: 'symlink-out',
    expect: {
      'in-process': ok('the link is removed, the host file is untouched'),
      'worker-pool': ok('the link is removed, the host file is untouched'),
      subprocess: code('PERMISSION_DENIED', 'the permission model refuses to create the symlink at all; the host file is untouched'),
    },
    check: async (_result, env) => {
      expect(await readFile(path.join(env.outside, 'precious.txt'), 'utf8')).toBe('keep me');
    },
  },
  ...SANDBOX_ROWS,
];

/** Run every cell of the matrix on one backend. */
export function describeHostileMatrix(type: BackendType, create: BackendFactory): void {
  describe(`hostile matrix: ${type}`, () => {
    const dirs = { root: '', outside: '' };
    const previousCanary = process.env[HOST_CANARY_ENV];

    beforeAll(async () => {
      dirs.root = await mkdtemp(path.join(os.tmpdir(), `kb-hostile-${type}-`));
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
      const outcome = cell.expect[type];
      if ('undefended' in outcome) {
        it.skip(`${cell.title} — not defended on ${type}: ${outcome.undefended}`, () => {});
        continue;
      }
      const name = `${cell.title} → ${outcome.codes.join(' or ')}${outcome.note ? ` (${outcome.note})` : ''}`;
      if (cell.needsSandbox && !sandboxPlatform) {
        it.skip(`${name} — needs the bubblewrap OS sandbox, which runs on Linux only (this is ${process.platform})`, () => {});
        continue;
      }
      it(name, () => runCell(type, create, cell, outcome.codes, dirs), 120_000);
    }
  });
}

/** One cell on one backend: the outcome, the cell's checks, a healthy backend after it, nothing leaked. */
async function runCell(type: BackendType, create: BackendFactory, cell: MatrixCell, codes: Code[], dirs: { root: string; outside: string }): Promise<void> {
  const { root, outside } = dirs;
  const backend: IExecutionBackend = create({
    plugins: [fixturePlugins.basic, fixturePlugins.hostile],
    workspace: { root },
    ...cell.options,
    ...cell.backendOptions?.[type],
  });
  let run: CellRun | undefined;
  try {
    if (cell.needsSandbox) await requireBubblewrap(backend);
    const env: CellEnv = { outside, sandboxed: cell.needsSandbox === true };
    run = await cell.prepare?.(env);
    const input =
      cell.id === 'write-outside'
        ? { path: path.join(outside, `escaped-${type}.txt`) }
        : cell.id === 'symlink-release'
          ? { target: path.join(outside, 'precious.txt') }
          : run
            ? run.input
            : cell.input;
    const result = await backend.execute(
      { pluginId: HOSTILE, handlerId: cell.handler, input },
      { timeoutMs: cell.timeoutMs ?? 10_000, ...(run?.onEvent ? { onEvent: run.onEvent } : {}) },
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
  // …and nothing is leaked: no workspace left, nothing written outside where it was refused.
  expect(await readdir(root)).toEqual([]);
  if (cell.id === 'write-outside') {
    await expect(stat(path.join(outside, `escaped-${type}.txt`))).rejects.toMatchObject({ code: 'ENOENT' });
  }
  if (cell.id === 'symlink-release') {
    expect((await lstat(path.join(outside, 'precious.txt'))).isFile()).toBe(true);
  }
}
