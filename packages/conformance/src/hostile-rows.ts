/**
 * The rows of the hostile-plugin matrix that are not about the OS sandbox: runaway and crashing
 * handlers, odd values thrown and returned, memory, output, the runner channel, env and files.
 */
import { lstat, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { getHeapSpaceStatistics } from 'node:v8';
import { CALLS_IN_FLIGHT, MAX_HELD_CALL_BYTES, type ExecutionResult } from '@kb-labs/plugin-execution-core';
import { expect } from 'vitest';
import { all, code, codes, isolating, ok, undefended, type CellEnv, type CellRun, type MatrixCell } from './hostile-cell.js';

/** Where `write-outside` tries to write: outside every grant, one file per backend. */
const escapedFile = (env: CellEnv): string => path.join(env.outside, `escaped-${env.type}.txt`);
/** The host file `symlink-out` links to from its workspace. */
const preciousFile = (env: CellEnv): string => path.join(env.outside, 'precious.txt');

/** Above what one walk of a value writes (4 Mi characters, MAX_WALK_CHARS), with the JSON around them. */
const WALK_BOUND = 5 * 1024 * 1024;

export const HOST_CANARY_ENV = 'KB_HOSTILE_MATRIX_CANARY';

/**
 * The host service of the platform rows: `hold.wait(i)` answers only when the run is over, so
 * the calls a flood has in the host pile up there, and the check sees how many got in.
 */
const HELD = heldCalls();

/** The rows every backend can be asked about; the OS-sandbox rows are in ./hostile-sandbox-rows.ts. */
export const HOSTILE_ROWS: MatrixCell[] = [
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
  {
    id: 'throw-shared-value',
    title: 'throw an object holding one 60 KB string under 10,000 paths (600 MB written out)',
    handler: 'shared-value',
    input: { as: 'throw' },
    expect: all(code('HANDLER_ERROR', 'what the error carries of the value is cut to MAX_WALK_CHARS')),
    check: (result) => {
      if (result.ok) return;
      // Before: the whole 600 MB crossed (worker-pool: the host's event loop held 4 s, its memory at 1.4 GB).
      expect(JSON.stringify(result.error).length).toBeLessThan(WALK_BOUND);
      expect(result.error.message).toMatch(/^Handler threw a non-Error object: \{"k0":\{"k0":"yyy/);
    },
  },
  {
    id: 'log-shared-value',
    title: "log fields holding one 60 KB string under 10,000 paths (600 MB written out)",
    handler: 'shared-value',
    prepare: () => {
      const fields: unknown[] = [];
      return {
        input: { as: 'log' },
        onLog: (line) => {
          if (line.stream === 'logger') fields.push(line.fields);
        },
        verify: () => {
          // Before: a TIMEOUT on worker-pool (the thread stuck sending the 600 MB), the whole 600 MB in-process.
          expect(fields).toHaveLength(1);
          const json = JSON.stringify(fields[0]);
          expect(json.length).toBeLessThan(WALK_BOUND);
          expect(json).toContain('[Truncated]');
        },
      };
    },
    expect: all(ok('the fields are cut to MAX_WALK_CHARS')),
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
    expect: { ...all(ok()), queue: code('VALIDATION_ERROR', "over the queue's 20 MiB maxPayloadBytes, named in the message") },
    check: (result) => {
      if (!result.ok) expect(result.error.message).toContain('maxPayloadBytes');
      if (result.ok) expect((result.data as string).length).toBe(100 * 1024 * 1024);
    },
  },
  {
    id: 'heap-oom',
    title: 'heap out of memory',
    handler: 'oom',
    // The handler's manifest sets memoryMb: 64, which every isolating backend applies.
    timeoutMs: 60_000,
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
      queue: code('PERMISSION_DENIED', "the worker's subprocess backend: as subprocess"),
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
      queue: ok("captured on the worker, capped, and streamed to the caller's onLog"),
    },
  },
  {
    id: 'event-flood',
    title: 'emit a million 1 KB events in a tight loop',
    handler: 'event-flood',
    // 21 s on a subprocess here beside another test run, 100 s with a third of a core.
    timeoutMs: 150_000,
    // Through the queue, each event is a NATS message: a tenth of them keeps the cell short.
    prepare: (env) => floodWatch({ n: env.type === 'queue' ? 100_000 : 1_000_000, kb: 1 }),
    expect: {
      'in-process': ok('delivered to onEvent as they are emitted, on the host'),
      'worker-pool': ok('paced: the thread waits while the host is behind; every event delivered, the host memory bounded'),
      subprocess: ok('paced: the child writes its channel at once, as its stdout, and waits while the host is behind; every event delivered'),
      queue: codes(['ok', 'TIMEOUT'], "paced on the worker, streamed to the caller's onEvent"),
    },
  },
  {
    id: 'protocol-garbage',
    title: 'write garbage to the runner channel',
    handler: 'protocol-garbage',
    timeoutMs: 3000,
    expect: {
      'in-process': undefended('there is no channel: the handler runs in the host; use worker-pool or subprocess'),
      'worker-pool': codes(['WORKER_CRASHED', 'TIMEOUT'], 'forged messages are ignored or end the thread; the host is unaffected'),
      subprocess: code('WORKER_CRASHED', 'protocol error: the child is killed'),
      queue: code('WORKER_CRASHED', "the worker's child is killed; the worker and the host are unaffected"),
    },
  },
  {
    id: 'platform-flood',
    title: 'fire 20,000 platform calls at once at a host service that does not answer',
    handler: 'platform-flood',
    timeoutMs: 3000,
    options: HELD.options,
    // The calls waiting their turn are the handler's own memory (on in-process, the host's heap:
    // about 2 KB each on Node 24), hence not more of them.
    prepare: () => HELD.watch({ n: 20_000 }, CALLS_IN_FLIGHT),
    expect: all(code('TIMEOUT', `the host's service gets ${CALLS_IN_FLIGHT} of them; the rest wait in the handler's runtime`)),
  },
  {
    id: 'platform-bulk',
    title: 'call a host service that does not answer with 24 arguments of 3 MiB each',
    handler: 'platform-bulk',
    // 72 MiB of arguments to copy to the host (through a queue, in parts): 3.5 s on a subprocess
    // here beside another test run, past 10 s with a third of a core.
    timeoutMs: 60_000,
    options: HELD.options,
    // The host holds a plugin's pending calls' arguments up to MAX_HELD_CALL_BYTES: 21 of them
    // (63 MiB); the rest are refused at once, so a slow service cannot fill the host's memory.
    prepare: () => HELD.watch({ n: 24, mb: 3, settleMs: 1500 }, 21),
    expect: all(ok(`the calls past ${MAX_HELD_CALL_BYTES / 2 ** 20} MiB of pending arguments get QUEUE_FULL; the host's memory stays bounded`)),
    check: (result) => {
      if (result.ok) expect((result.data as { refused: string[] }).refused).toEqual(['QUEUE_FULL', 'QUEUE_FULL', 'QUEUE_FULL']);
    },
  },
  {
    id: 'forge-platform-calls',
    title: 'send the host 1,000 platform calls itself, past ctx.platform and its bound',
    handler: 'forge-platform-calls',
    timeoutMs: 3000,
    options: HELD.options,
    prepare: (env) => HELD.watch({ n: 1000 }, env.type === 'worker-pool' ? 0 : CALLS_IN_FLIGHT),
    expect: {
      'in-process': undefended('there is no channel: the handler runs in the host; use worker-pool or subprocess'),
      'worker-pool': code('TIMEOUT', "a thread's parentPort is not its channel: no call reaches the host's services"),
      subprocess: code('WORKER_CRASHED', `one call past ${CALLS_IN_FLIGHT} in flight breaks the protocol: the child is killed`),
      queue: code('WORKER_CRASHED', "the worker's child is killed the same way; the worker and the host are unaffected"),
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
      queue: ok("the worker's env is its own, and only allow-listed names reach its child"),
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
      queue: code('PERMISSION_DENIED', "the worker's subprocess backend: writes to the workspace only"),
    },
    prepare: (env) => ({ input: { path: escapedFile(env) } }),
    checkAfterShutdown: async (env) => {
      await expect(stat(escapedFile(env))).rejects.toMatchObject({ code: 'ENOENT' });
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
      queue: code('PERMISSION_DENIED', "the worker's subprocess backend refuses the symlink"),
    },
    prepare: (env) => ({ input: { target: preciousFile(env) } }),
    check: async (_result, env) => {
      expect(await readFile(preciousFile(env), 'utf8')).toBe('keep me');
    },
    checkAfterShutdown: async (env) => {
      expect((await lstat(preciousFile(env))).isFile()).toBe(true);
    },
  },
];

/** Host memory this process may grow by while a flood runs (of 1 GB): paced, a worker-pool host grew by 86 MB; unpaced, by 424 MB. */
const FLOOD_HOST_GROWTH_MB = 200;

/**
 * How far the host's resident memory has grown since it was made, less what V8's young generation
 * grew by: space for short-lived objects, bounded whatever a plugin does, and larger on newer Nodes
 * (Node 24 sizes it to 192 MB where Node 20 and 22 stop at 48: after the same flood it held 128 MB
 * there, 12 of them in use, against 32). A young generation that shrank is not counted the other
 * way: the resident memory does not fall with it (on Node 24 the flood of held calls leaves 128 MB,
 * which shrinks to 8 while the next row runs: that row was charged 120 MB it never used).
 */
function hostMemoryGrowth(): () => number {
  const young = (): number => getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
  const rss0 = process.memoryUsage().rss;
  const young0 = young();
  return () => process.memoryUsage().rss - rss0 - Math.max(0, young() - young0);
}

/** Samples the host's memory while the flood runs; checks it stayed bounded and, on success, that every event arrived. */
function floodWatch(input: { n: number; kb: number }): CellRun {
  const growth = hostMemoryGrowth();
  let peak = 0;
  let delivered = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, growth())), 20);
  return {
    input,
    onEvent: (event) => {
      if ((event.event as { type?: unknown })?.type === 'flood') delivered++;
    },
    verify: (result) => {
      clearInterval(sampler);
      peak = Math.max(peak, growth());
      expect(peak / 2 ** 20, 'host memory growth (MB) during the flood').toBeLessThan(FLOOD_HOST_GROWTH_MB);
      if (result.ok) expect(delivered).toBe(input.n);
      else expect(result.error.message).toMatch(/faster than the (calling )?host read them|did not finish within/);
    },
    close: () => clearInterval(sampler),
  };
}

/** See HELD. */
function heldCalls() {
  let held: Array<() => void> = [];
  const release = (): void => {
    for (const answer of held.splice(0)) answer();
  };
  return {
    options: {
      platform: { hold: { wait: (i: number) => new Promise((resolve) => held.push(() => resolve(i))) } },
      permissions: { platform: { hold: ['wait'] } },
    },
    /** The run's input, and its check: exactly `expected` calls reached the service, the host's memory stayed bounded. */
    watch(input: { n: number; [more: string]: unknown }, expected: number): CellRun {
      held = [];
      const growth = hostMemoryGrowth();
      return {
        input,
        verify: async (result: ExecutionResult) => {
          // The forged calls of a child arrive as fast as it writes them: give the host a moment to read them all.
          await new Promise((resolve) => setTimeout(resolve, 200));
          expect(held.length, "calls that reached the host's service").toBe(expected);
          expect(growth() / 2 ** 20, 'host memory growth (MB)').toBeLessThan(FLOOD_HOST_GROWTH_MB);
          if (!result.ok && result.error.code === 'WORKER_CRASHED') expect(result.error.message).toMatch(/calls of this execution already in flight/);
        },
        close: release,
      };
    },
  };
}
